"""Where an IP address is: continent, country and city, and its autonomous system.

Read from MaxMind databases (GeoIP2 / GeoLite2 City or Country, and ASN) named by
``geo.city_db`` and ``geo.asn_db``; either may be unset, and with both unset there
is no locator at all. Addresses come from the network (candidates, the websocket's
remote address), so a lookup takes any string and answers ``None`` for whatever is
not a public address: garbage, host names (mDNS ``….local`` candidates), masked
addresses, private, loopback, link-local, shared (CGNAT) and other reserved ranges.
Lookups must see addresses before IP masking: masked ones are not addresses.

A lookup is a memory-mapped tree walk of a few microseconds, CPU only; it runs in the
analysis workers with the rest of the feature extraction, never on the ingest loop.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import maxminddb
from maxminddb import InvalidDatabaseError

from rtcstats_server.config import GeoConfig
from rtcstats_server.exceptions import ConfigError

#: The longest text that can be an address (IPv6 with an IPv4 tail, a zone, brackets).
_MAX_ADDRESS: Final = 64
_CITY_TYPES: Final = ("City", "Country", "Enterprise")
_ASN_TYPES: Final = ("ASN", "ISP")


@dataclass(frozen=True, slots=True)
class Location:
    """What the databases know of one address; a field they do not know is None."""

    continent: str | None = None
    country: str | None = None
    country_code: str | None = None
    city: str | None = None
    asn: int | None = None
    organization: str | None = None

    def fields(self) -> dict[str, Any]:
        """The known fields only, for a record."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def public_address(text: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``text`` names when it is a public one, else None.

    Accepts ``[v6]`` brackets and ``%zone`` suffixes as candidates and headers write
    them; an IPv4-mapped IPv6 address is its IPv4 address.
    """
    if not isinstance(text, str) or not 0 < len(text) <= _MAX_ADDRESS:
        return None
    text = text.strip().removeprefix("[").removesuffix("]").partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address if address.is_global and not address.is_multicast else None


def _english(record: dict[str, Any], key: str) -> str | None:
    names = record.get(key, {}).get("names", {}) if isinstance(record.get(key), dict) else {}
    name = names.get("en") if isinstance(names, dict) else None
    return name if isinstance(name, str) else None


def _open(path: Path, key: str, kinds: tuple[str, ...]) -> maxminddb.Reader:
    """A reader for ``path``, or a ConfigError naming ``key`` (read at start)."""
    try:
        reader = maxminddb.open_database(str(path))
    except (OSError, InvalidDatabaseError, ValueError) as exc:
        raise ConfigError(key, f"not a MaxMind database ({exc}) (got {str(path)!r})") from None
    kind = reader.metadata().database_type
    if not any(word in kind for word in kinds):
        reader.close()
        raise ConfigError(
            key, f"a {kind} database, expected {' or '.join(kinds)} (got {str(path)!r})"
        )
    return reader


class GeoLocator:
    """Lookups in the configured databases; build it once with ``open_locator``."""

    def __init__(self, city: maxminddb.Reader | None, asn: maxminddb.Reader | None) -> None:
        self._city = city
        self._asn = asn

    def lookup(self, text: object) -> Location | None:
        """Where the address ``text`` is, or None (not a public address, or unknown)."""
        address = public_address(text)
        if address is None:
            return None
        city = self._get(self._city, address)
        asn = self._get(self._asn, address)
        number = asn.get("autonomous_system_number")
        organization = asn.get("autonomous_system_organization")
        country = city.get("country")
        code = country.get("iso_code") if isinstance(country, dict) else None
        location = Location(
            continent=_english(city, "continent"),
            country=_english(city, "country"),
            country_code=code if isinstance(code, str) else None,
            city=_english(city, "city"),
            asn=number if type(number) is int else None,
            organization=organization if isinstance(organization, str) else None,
        )
        return location if location.fields() else None

    @staticmethod
    def _get(
        reader: maxminddb.Reader | None,
        address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    ) -> dict[str, Any]:
        if reader is None:
            return {}
        try:
            record = reader.get(address)
        except (ValueError, InvalidDatabaseError):
            # an IPv6 address in an IPv4-only database, or a damaged file: unknown
            return {}
        return record if isinstance(record, dict) else {}

    def close(self) -> None:
        for reader in (self._city, self._asn):
            if reader is not None:
                reader.close()


def open_locator(config: GeoConfig) -> GeoLocator | None:
    """The locator of ``config``; None when no database is configured.

    Raises ``ConfigError`` naming the key of a file that is not a database of its kind
    (``geo.city_db`` given an ASN database, a truncated download, ...).
    """
    if config.city_db is None and config.asn_db is None:
        return None
    city = _open(config.city_db, "geo.city_db", _CITY_TYPES) if config.city_db else None
    try:
        asn = _open(config.asn_db, "geo.asn_db", _ASN_TYPES) if config.asn_db else None
    except ConfigError:
        if city is not None:
            city.close()
        raise
    return GeoLocator(city, asn)
