"""Text encoders that turn entity texts into vectors."""
