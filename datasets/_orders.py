"""The ``orders`` profile: e-commerce orders shaped for ``migrator/mappings/orders.toml``.

One ``<order>`` is about 2 KB of pretty-printed XML: attributes and elements, a nested
address, 0-5 ``<line>`` and 0-3 ``<payment>`` children, an escaped free-text comment, a CDATA
note (with ``]]>`` split across sections), non-ASCII text, and now and then an XML comment or
processing instruction between elements, which a mapper must skip.

Speed matters (the generator must outrun the migration it feeds), so :meth:`render` is one
straight-line function: pools are pre-escaped, picks are ``int(random() * n)`` (stable across
Python versions, unlike ``hash()``-dependent orders), money is integer cents.
"""

from __future__ import annotations

import datetime as dt
import random

from datasets import _orders_data as data
from datasets._record import Rendered

_FIRST_DAY = dt.date(2023, 1, 1).toordinal()
_ORDER_DAYS = 730              # orders are created in 2023-2024
_DATES = tuple(dt.date.fromordinal(_FIRST_DAY + i).isoformat() for i in range(_ORDER_DAYS + 12))
_BIRTH_FIRST = dt.date(1940, 1, 1).toordinal()
_BIRTH_SPAN = dt.date(2006, 12, 31).toordinal() - _BIRTH_FIRST
_POSTAL_CODES_PER_CITY = 16
_BAD_DATES = ("{y}-02-30", "{y}-04-31", "{y}-13-01", "{y}-00-10", "2023-02-29", "05/03/{y}")


def escape(text: str) -> str:
    """Escape character data for element text (quotes need no escaping there)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cdata(text: str) -> str:
    """Wrap text in CDATA; a literal ``]]>`` is split across two sections."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


_HH_MM = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SS = tuple(f"{s:02d}" for s in range(60))


def _clock(secs: int) -> str:
    """``hh:mm:ss`` of a second of the day (table lookups: called ~3 times per record)."""
    return _HH_MM[secs // 60] + _SS[secs % 60]


def _line(sku: str, desc: str, qty: str | None, price: str, pct: str) -> str:
    """One <line> element (general form, used when a defect alters a line)."""
    qty_elem = f"        <quantity>{qty}</quantity>\n" if qty is not None else ""
    return (f'      <line sku="{sku}">\n'
            f"        <description>{desc}</description>\n"
            f"{qty_elem}"
            f"        <unitPrice>{price}</unitPrice>\n"
            f"        <discountPct>{pct}</discountPct>\n"
            "      </line>\n")


class _City:
    __slots__ = ("city", "country", "currency", "phone", "postal", "region", "streets", "tax_bp")

    def __init__(self, row: tuple[str, str, str, str, str, str, int, tuple[str, ...]],
                 rng: random.Random) -> None:
        city, region, country, currency, phone, template, tax_bp, streets = row
        self.city = escape(city)
        self.region = escape(region)
        self.country = country
        self.currency = currency
        self.phone = phone
        self.postal = tuple(
            "".join(str(rng.randrange(10)) if ch == "#" else ch for ch in template)
            for _ in range(_POSTAL_CODES_PER_CITY))
        self.tax_bp = tax_bp
        self.streets = tuple(escape(s) for s in streets)


class _Product:
    """A catalogue entry with its <line> text pre-split around the per-line values."""

    __slots__ = ("desc", "head", "mid", "price", "price_text", "sku", "tail")

    def __init__(self, sku: str, desc: str, price: int) -> None:
        self.sku = sku
        self.desc = escape(desc)
        self.price = price
        self.price_text = money(price)
        self.head = f'      <line sku="{sku}-'
        self.mid = f'">\n        <description>{self.desc}</description>\n        <quantity>'
        self.tail = (f"</quantity>\n        <unitPrice>{self.price_text}</unitPrice>\n"
                     "        <discountPct>")


# Prepared pools: same for every seed (postal codes come from a fixed generator).
_POOL_RNG = random.Random("orders/pools")
_CITIES = tuple(_City(row, _POOL_RNG) for row in data.CITIES)
_FIRST = tuple((escape(n), n, slug) for n, slug in data.FIRST_NAMES)
_LAST = tuple((escape(n), n, slug) for n, slug in data.LAST_NAMES)
_REPS = tuple(escape(s) for s in data.SALES_REPS)
_PRODUCTS = tuple(_Product(*p) for p in data.PRODUCTS)
_DISCOUNTS = tuple((bp, f"{bp // 100}.{bp % 100:02d}") for bp in data.DISCOUNT_BP)
_COMMENTS = tuple((escape(f), f, len(f)) for f in data.COMMENT_FRAGMENTS)
_ASIDES = (tuple(f"    <!--{c}-->\n" for c in data.XML_COMMENTS)
           + tuple(f"    <?{pi}?>\n" for pi in data.PROCESSING_INSTRUCTIONS))
_STATUSES, _N_STATUSES = data.STATUSES, len(data.STATUSES)
_N_CITIES, _N_FIRST, _N_LAST = len(_CITIES), len(_FIRST), len(_LAST)
_DOMAINS, _N_DOMAINS = data.MAIL_DOMAINS, len(data.MAIL_DOMAINS)
_TZ, _N_TZ = data.TZ_SUFFIXES, len(data.TZ_SUFFIXES)
_SHIP_METHODS, _N_SHIP_METHODS = data.SHIP_METHODS, len(data.SHIP_METHODS)
_LINE_COUNTS, _N_LINE_COUNTS = data.LINE_COUNTS, len(data.LINE_COUNTS)
_N_PRODUCTS, _N_DISCOUNTS = len(_PRODUCTS), len(_DISCOUNTS)
_QTY, _N_QTY = tuple(str(q) for q in data.QUANTITIES), len(data.QUANTITIES)
_N_COMMENTS, _N_NOTES, _N_REPS = len(_COMMENTS), len(data.NOTE_FRAGMENTS), len(_REPS)


class OrdersSource:
    """Seeded stream of ``<order>`` records (see :class:`datasets._record.RecordSource`)."""

    name = "orders"
    first_key = 100001
    tables: tuple[str, ...] = ("orders", "order_lines", "payments")

    def __init__(self, seed: int) -> None:
        # String seeds are hashed with SHA-512 by random.seed(): stable across versions and
        # platforms, and -1 and 1 stay different (int seeds use abs()).
        self._rng = random.Random(f"orders/{seed}/records")
        self._defect_rng = random.Random(f"orders/{seed}/defects")

    def header(self) -> str:
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                "<!-- mock orders generated by migration-bench (datasets) -->\n"
                "<orders>\n")

    def footer(self) -> str:
        return "</orders>\n"

    def render(self, key: int, defect: str | None) -> Rendered:
        rng = self._rng
        r = rng.random

        status = _STATUSES[int(r() * _N_STATUSES)]
        city = _CITIES[int(r() * _N_CITIES)]
        currency = city.currency
        day = int(r() * _ORDER_DAYS)
        secs = int(r() * 86400)
        order_date = _DATES[day]
        created = f"{order_date}T{_clock(secs)}{_TZ[int(r() * _N_TZ)]}"

        customer_id = 5_000_000 + int(r() * 1_000_000)
        vip = "true" if r() < 0.1 else "false"
        first, first_raw, first_slug = _FIRST[int(r() * _N_FIRST)]
        last, last_raw, last_slug = _LAST[int(r() * _N_LAST)]
        domain = _DOMAINS[int(r() * _N_DOMAINS)]
        email = f"{first_slug}.{last_slug}{int(r() * 100)}@{domain}"
        phone = (f"      <phone>{city.phone} {int(r() * 900) + 100} {int(r() * 9000) + 1000}"
                 "</phone>\n" if r() < 0.8 else "")
        birth = (dt.date.fromordinal(_BIRTH_FIRST + int(r() * _BIRTH_SPAN)).isoformat()
                 if r() < 0.7 else None)
        loyalty = str(int(r() * r() * 25000))

        method = _SHIP_METHODS[int(r() * _N_SHIP_METHODS)]
        costs = data.SHIP_COST_CENTS[method]
        cost = costs[int(r() * len(costs))]
        street = f"{city.streets[int(r() * len(city.streets))]} {int(r() * 200) + 1}"
        postal = city.postal[int(r() * _POSTAL_CODES_PER_CITY)]
        shipped = ""
        if status in data.SHIPPED_STATUSES:
            shipped = (f"      <shippedAt>{_DATES[day + 1 + int(r() * 10)]}"
                       f"T{_clock(int(r() * 86400))}Z</shippedAt>\n")

        lines: list[str] = []
        subtotal = 0
        first_line: tuple[str, str, str, str, str] | None = None
        for _ in range(_LINE_COUNTS[int(r() * _N_LINE_COUNTS)]):
            product = _PRODUCTS[int(r() * _N_PRODUCTS)]
            qty_index = int(r() * _N_QTY)
            bp, pct = _DISCOUNTS[int(r() * _N_DISCOUNTS)]
            variant = int(r() * 1000)
            qty = _QTY[qty_index]
            subtotal += (data.QUANTITIES[qty_index] * product.price * (10000 - bp)
                         + 5000) // 10000
            lines.append(f"{product.head}{variant:03d}{product.mid}{qty}{product.tail}{pct}"
                         "</discountPct>\n      </line>\n")
            if first_line is None:
                first_line = (f"{product.sku}-{variant:03d}", product.desc, qty,
                              product.price_text, pct)
        tax = (subtotal * city.tax_bp + 5000) // 10000
        discount = min(subtotal, data.DISCOUNT_CENTS[int(r() * len(data.DISCOUNT_CENTS))])
        total_cents = subtotal + tax - discount + cost
        total = f"{total_cents // 100}.{total_cents % 100:02d}"

        payments: list[str] = []
        if status not in data.UNPAID_STATUSES:
            count = data.PAYMENT_COUNTS[int(r() * len(data.PAYMENT_COUNTS))]
            left = total_cents
            for i in range(count):
                amount = left if i == count - 1 else int(left * (0.3 + 0.4 * r()))
                left -= amount
                paid = secs + 60 + int(r() * 7200)
                pay_method = data.PAYMENT_METHODS[int(r() * len(data.PAYMENT_METHODS))]
                payments.append(
                    f'      <payment method="{pay_method}">\n'
                    f"        <amount>{amount // 100}.{amount % 100:02d}</amount>\n"
                    f"        <paidAt>{_DATES[day + paid // 86400]}T{_clock(paid % 86400)}Z"
                    "</paidAt>\n"
                    f"        <reference>PAY-{rng.getrandbits(48):012X}</reference>\n"
                    "      </payment>\n")

        channel = data.CHANNELS[int(r() * len(data.CHANNELS))]
        priority = data.PRIORITIES[int(r() * len(data.PRIORITIES))]
        gift = "true" if r() < 0.15 else "false"
        rep = (f"    <salesRep>{_REPS[int(r() * _N_REPS)]}</salesRep>\n"
               if r() < 0.85 else "")

        # comment: 80-400 characters, shorter ones more likely (mean ~190)
        target = 80 + int(r() * r() * 321)
        picked: list[tuple[str, str, int]] = []
        length = -1
        while length < target:
            fragment = _COMMENTS[int(r() * _N_COMMENTS)]
            picked.append(fragment)
            length += fragment[2] + 1
        if length <= 400:
            comment = " ".join([f[0] for f in picked])
        else:
            comment = escape(" ".join([f[1] for f in picked])[:400].rstrip())
        note = ""
        if r() < 0.9:
            note = "    <note>" + cdata(" ".join(
                [data.NOTE_FRAGMENTS[int(r() * _N_NOTES)] for _ in range(1 + int(r() * 3))]
            )) + "</note>\n"
        extra = r()     # an XML comment or PI between two elements, which mappers skip
        aside = _ASIDES[int(r() * len(_ASIDES))] if extra < 0.06 else ""

        # ---- defect injection: draws only from the defect generator ----
        column = None
        if defect is not None:
            d = self._defect_rng.random
            year = order_date[:4]
            variant = int(d() * (4 if first_line else 3))
            line_fields = list(first_line) if first_line else []
            if defect == "missing_required":
                if variant == 0:
                    email, column = "", "orders.email"
                elif variant == 1:
                    total, column = "", "orders.total"
                elif variant == 2:
                    currency, column = "", "orders.currency"
                else:
                    line_fields[2], column = "", "order_lines.quantity"
            elif defect == "bad_number":
                if variant == 0:
                    whole, cents = divmod(total_cents, 100)
                    total = (f"{whole:,}.{cents:02d}" if whole >= 1000
                             else f"{whole},{cents:02d}")
                    column = "orders.total"
                elif variant == 1:
                    loyalty, column = f"{loyalty}pts", "orders.loyalty_points"
                elif variant == 2:
                    priority, column = "high", "orders.priority"
                else:
                    line_fields[2] += "x"
                    column = "order_lines.quantity"
            elif defect == "bad_date":
                bad = _BAD_DATES[int(d() * len(_BAD_DATES))].format(y=year)
                if variant % 2 == 0:
                    order_date, column = bad, "orders.order_date"
                else:
                    birth, column = bad, "orders.birth_date"
            elif defect == "too_long":
                if variant == 0:
                    last = escape(_stretch(last_raw, 81 + int(d() * 40)))
                    column = "orders.last_name"
                elif variant == 1:
                    first = escape(_stretch(first_raw, 61 + int(d() * 20)))
                    column = "orders.first_name"
                elif variant == 2:
                    email = f"{_stretch(first_slug + '.' + last_slug, 121)}@{domain}"
                    column = "orders.email"
                else:
                    line_fields[0] = _stretch(line_fields[0], 41)
                    column = "order_lines.sku"
            else:
                raise ValueError(f"unknown defect kind {defect!r}")
            if column.startswith("order_lines."):
                sku, desc, qty, price, pct = line_fields
                lines[0] = _line(sku, desc, qty or None, price, pct)

        # ---- rendering; "" marks an absent element or attribute ----
        text = "".join([
            f'  <order id="{key}" status="{status}"',
            f' currency="{currency}">\n' if currency else ">\n",
            f"    <created>{created}</created>\n"
            f"    <orderDate>{order_date}</orderDate>\n"
            f'    <customer id="{customer_id}" vip="{vip}">\n'
            f"      <firstName>{first}</firstName>\n"
            f"      <lastName>{last}</lastName>\n",
            f"      <email>{email}</email>\n" if email else "",
            phone,
            f"      <birthDate>{birth}</birthDate>\n" if birth else "",
            f"      <loyaltyPoints>{loyalty}</loyaltyPoints>\n"
            "    </customer>\n"
            f'    <shipping method="{method}">\n'
            "      <address>\n"
            f"        <street>{street}</street>\n"
            f"        <city>{city.city}</city>\n"
            f"        <postalCode>{postal}</postalCode>\n"
            f"        <region>{city.region}</region>\n"
            f"        <country>{city.country}</country>\n"
            "      </address>\n"
            f"      <cost>{cost // 100}.{cost % 100:02d}</cost>\n",
            shipped,
            "    </shipping>\n"
            "    <totals>\n"
            f"      <subtotal>{subtotal // 100}.{subtotal % 100:02d}</subtotal>\n"
            f"      <tax>{tax // 100}.{tax % 100:02d}</tax>\n"
            f"      <discount>{discount // 100}.{discount % 100:02d}</discount>\n",
            f"      <total>{total}</total>\n" if total else "",
            "    </totals>\n",
            aside,
            f"    <channel>{channel}</channel>\n"
            f"    <priority>{priority}</priority>\n"
            f"    <giftWrap>{gift}</giftWrap>\n",
            rep,
            f"    <comment>{comment}</comment>\n",
            note,
            "    <lines>\n" if lines else "    <lines/>\n",
            *lines,
            "    </lines>\n" if lines else "",
            "    <payments>\n" if payments else "    <payments/>\n",
            *payments,
            "    </payments>\n  </order>\n" if payments else "  </order>\n",
        ])
        return Rendered(text, (1, len(lines), len(payments)), column)


def _stretch(text: str, length: int) -> str:
    """``text`` repeated (hyphen-joined) and cut to exactly ``length`` characters."""
    return ("-".join([text] * (length // max(1, len(text)) + 1)))[:length]
