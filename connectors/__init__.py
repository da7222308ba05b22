"""Connectors: read knowledge graphs from RDF, triple tables and Neo4j, and write results back."""
