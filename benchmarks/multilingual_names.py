"""A public multilingual vocabulary from PyPI packages: CLDR display names (``babel``) and ISO names with their
translations (``pycountry``), one concept per language, language family, territory, former country, script,
currency, unit, time-zone city, region and subdivision, with its name in English, Chinese, Japanese, German, French and Spanish where the data has one.
"""

from __future__ import annotations

import gettext

LANGUAGES = ("en", "zh", "ja", "de", "fr", "es")
_GETTEXT = {"zh": "zh_CN", "ja": "ja", "de": "de", "fr": "fr", "es": "es"}


def concepts() -> dict[str, dict[str, str]]:
    """``{concept key: {language: name}}``; every concept has an English name and at least one other."""
    import pycountry
    from babel import Locale

    names: dict[str, dict[str, str]] = {}

    def add(key: str, lang: str, name: str | None) -> None:
        if name and name.strip():
            names.setdefault(key, {}).setdefault(lang, name.strip())

    locales = {lang: Locale.parse(lang) for lang in LANGUAGES}
    for lang, loc in locales.items():  # CLDR first: its names are the curated ones
        for kind, table in (
            ("language", loc.languages),
            ("territory", loc.territories),
            ("script", loc.scripts),
            ("currency", loc.currencies),
        ):
            for code, name in table.items():
                add(f"{kind}:{code}", lang, name)
        for unit, data in loc.unit_display_names.items():
            add(f"unit:{unit}", lang, data.get("long"))
        for code, name in loc.variants.items():
            add(f"variant:{code}", lang, name)
        for zone, data in loc.time_zones.items():
            add(f"city:{zone}", lang, data.get("city"))
        for zone, data in loc.meta_zones.items():
            add(f"zone:{zone}", lang, (data.get("long") or {}).get("generic"))
    for zone in list(names):  # English exemplar cities are the tz id's last part when CLDR has none
        if zone.startswith("city:") and "en" not in names[zone]:
            add(zone, "en", zone.rsplit("/", 1)[-1].replace("_", " "))
    for domain, table, kind, code_of in (
        ("iso639-3", pycountry.languages, "language", lambda x: getattr(x, "alpha_2", None) or x.alpha_3),
        ("iso3166-1", pycountry.countries, "territory", lambda x: x.alpha_2),
        ("iso4217", pycountry.currencies, "currency", lambda x: x.alpha_3),
        ("iso15924", pycountry.scripts, "script", lambda x: x.alpha_4),
        ("iso639-5", pycountry.language_families, "family", lambda x: x.alpha_3),
        ("iso3166-3", pycountry.historic_countries, "former", lambda x: x.alpha_4),
        ("iso3166-2", pycountry.subdivisions, "subdivision", lambda x: x.code),
    ):
        translations = {
            lang: gettext.translation(domain, pycountry.LOCALES_DIR, languages=[code], fallback=True)
            for lang, code in _GETTEXT.items()
        }
        for item in table:
            key, english = f"{kind}:{code_of(item)}", item.name
            add(key, "en", english)
            for lang, tr in translations.items():
                name = tr.gettext(english)
                if name != english:
                    add(key, lang, name)
    return {k: v for k, v in names.items() if "en" in v and len(v) > 1}
