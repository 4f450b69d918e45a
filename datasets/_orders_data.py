"""Word pools of the ``orders`` profile: plain data, no logic.

Weighted choices are expressed by repetition, so the generator picks with one ``random()``
call and an index (the fastest stable pick). Values are raw text; the generator escapes them.
Every value fits the column it feeds in ``migrator/mappings/orders.toml`` (str(n) limits);
``tests/test_datasets.py`` checks that on generated data.
"""

from __future__ import annotations

# status attribute (str(20)); shipped/delivered orders carry shipping/shippedAt.
STATUSES = (
    ("delivered",) * 8 + ("shipped",) * 4 + ("paid",) * 3 + ("pending",) * 2
    + ("cancelled",) + ("refunded",) + ("on_hold",)
)
SHIPPED_STATUSES = frozenset({"delivered", "shipped", "refunded"})
UNPAID_STATUSES = frozenset({"pending", "on_hold", "cancelled"})

# (city, region, country, currency, phone prefix, postal template, tax rate in basis points,
#  streets). "#" in a postal template is a random digit.
CITIES: tuple[tuple[str, str, str, str, str, str, int, tuple[str, ...]], ...] = (
    ("Zürich", "Zürich", "CH", "CHF", "+41 44", "80##", 810,
     ("Bahnhofstrasse", "Limmatquai", "Löwenstrasse", "Rämistrasse")),
    ("Genève", "Genève", "CH", "CHF", "+41 22", "12##", 810,
     ("Rue du Rhône", "Quai du Mont-Blanc", "Rue de l'École-de-Médecine")),
    ("São Paulo", "São Paulo", "BR", "BRL", "+55 11", "0####-###", 1700,
     ("Avenida Paulista", "Rua Augusta", "Rua Oscar Freire", "Praça da Sé")),
    ("Kraków", "Małopolskie", "PL", "PLN", "+48 12", "3#-###", 2300,
     ("ul. Floriańska", "ul. Grodzka", "Rynek Główny", "ul. Józefa")),
    ("Łódź", "Łódzkie", "PL", "PLN", "+48 42", "9#-###", 2300,
     ("ul. Piotrkowska", "al. Kościuszki")),
    ("東京", "東京都", "JP", "JPY", "+81 3", "1##-####", 1000,
     ("銀座4丁目", "渋谷2丁目", "新宿3丁目", "丸の内1丁目")),
    ("大阪", "大阪府", "JP", "JPY", "+81 6", "5##-####", 1000,
     ("梅田1丁目", "難波5丁目")),
    ("München", "Bayern", "DE", "EUR", "+49 89", "80###", 1900,
     ("Maximilianstraße", "Leopoldstraße", "Sendlinger Straße", "Marienplatz")),
    ("Köln", "Nordrhein-Westfalen", "DE", "EUR", "+49 221", "50###", 1900,
     ("Hohe Straße", "Schildergasse", "Domkloster")),
    ("Paris", "Île-de-France", "FR", "EUR", "+33 1", "750##", 2000,
     ("Rue de l'Église", "Boulevard Saint-Germain", "Avenue des Champs-Élysées")),
    ("Malmö", "Skåne", "SE", "SEK", "+46 40", "2## ##", 2500,
     ("Södra Förstadsgatan", "Östra Rönneholmsvägen", "Stortorget")),
    ("Reykjavík", "Höfuðborgarsvæðið", "IS", "ISK", "+354", "1##", 2400,
     ("Laugavegur", "Skólavörðustígur")),
    ("Montréal", "Québec", "CA", "CAD", "+1 514", "H#A #B#", 1498,
     ("Rue Sainte-Catherine", "Boulevard Saint-Laurent", "Rue Saint-Denis")),
    ("New York", "NY", "US", "USD", "+1 212", "100##", 888,
     ("Broadway", "Fifth Avenue", "Lexington Avenue", "W 42nd Street")),
    ("Austin", "TX", "US", "USD", "+1 512", "787##", 825,
     ("Congress Avenue", "South Lamar Blvd", "E 6th Street")),
    ("London", "England", "GB", "GBP", "+44 20", "SW# #AA", 2000,
     ("High Street", "Baker Street", "King's Road", "Oxford Street")),
    ("Dublin", "Leinster", "IE", "EUR", "+353 1", "D0# X#Y#", 2300,
     ("Grafton Street", "O'Connell Street")),
    ("Madrid", "Comunidad de Madrid", "ES", "EUR", "+34 91", "280##", 2100,
     ("Calle Mayor", "Gran Vía", "Calle de Alcalá", "Plaza de España")),
    ("Lisboa", "Lisboa", "PT", "EUR", "+351 21", "1###-###", 2300,
     ("Rua Augusta", "Avenida da Liberdade", "Praça do Comércio")),
    ("Wien", "Wien", "AT", "EUR", "+43 1", "10#0", 2000,
     ("Kärntner Straße", "Mariahilfer Straße", "Graben")),
    ("Αθήνα", "Αττική", "GR", "EUR", "+30 21", "10# ##", 2400,
     ("Οδός Ερμού", "Λεωφόρος Αλεξάνδρας")),
    ("서울", "서울특별시", "KR", "KRW", "+82 2", "0####", 1000,
     ("세종대로", "테헤란로")),
)

# (name, ASCII slug for e-mail addresses). first_name is str(60), last_name str(80).
FIRST_NAMES = (
    ("Zoë", "zoe"), ("José", "jose"), ("Łukasz", "lukasz"), ("Søren", "soren"),
    ("Chloé", "chloe"), ("Björn", "bjorn"), ("Émile", "emile"), ("Françoise", "francoise"),
    ("Jürgen", "jurgen"), ("Nuño", "nuno"), ("Agnieszka", "agnieszka"), ("Seán", "sean"),
    ("Zoltán", "zoltan"), ("Renée", "renee"), ("太郎", "taro"), ("花子", "hanako"),
    ("Yuki", "yuki"), ("D'Arcy", "darcy"), ("Olivia", "olivia"), ("Liam", "liam"),
    ("Noah", "noah"), ("Emma", "emma"), ("Sofia", "sofia"), ("Mia", "mia"), ("Lucas", "lucas"),
    ("Hannah", "hannah"), ("Mateo", "mateo"), ("Ingrid", "ingrid"), ("Aoife", "aoife"),
    ("Dmitri", "dmitri"), ("Anna-Lena", "annalena"), ("Mary Jane", "maryjane"),
    ("Ευγενία", "evgenia"), ("지민", "jimin"),
)
LAST_NAMES = (
    ("Müller", "muller"), ("O'Brien", "obrien"), ("García", "garcia"), ("Nowak", "nowak"),
    ("Kowalski", "kowalski"), ("山田", "yamada"), ("佐藤", "sato"), ("Øvergaard", "overgaard"),
    ("Svensson", "svensson"), ("Dubois", "dubois"), ("Rossi", "rossi"), ("Schmidt", "schmidt"),
    ("Johnson", "johnson"), ("Brown", "brown"), ("van der Berg", "vanderberg"),
    ("Fernández", "fernandez"), ("Łączyński", "laczynski"), ("Ní Bhriain", "nibhriain"),
    ("Gonçalves", "goncalves"), ("Lefèvre", "lefevre"), ("Jóhannsdóttir", "johannsdottir"),
    ("Papadopoulos", "papadopoulos"), ("Smith-Jones", "smithjones"), ("Kim", "kim"),
    ("Wiśniewska", "wisniewska"), ("Straße", "strasse"), ("MacDonald", "macdonald"),
)
MAIL_DOMAINS = (
    "example.com", "example.org", "mail.example.net", "post.example.ch", "example.co.jp",
    "correo.example.es", "example.de",
)

SHIP_METHODS = ("standard",) * 5 + ("express",) * 2 + ("pickup", "courier", "economy")
SHIP_COST_CENTS = {
    "standard": (495, 590, 690), "express": (1490, 1990), "pickup": (0,),
    "courier": (2450, 2990), "economy": (299, 350),
}
CHANNELS = ("web",) * 5 + ("mobile",) * 3 + ("store", "phone", "marketplace")
PRIORITIES = ("3",) * 5 + ("1", "2", "2", "4", "5")
SALES_REPS = (
    "Åsa Lindström", "Kenji 山本", "Marta Wójcik", "Jean-Luc Émond", "Priya Natarajan",
    "Smith & Partners", "Tomás Ó Súilleabháin", "Eva Nováková", "Ahmed Al-Farsi",
    "Inside Sales <EMEA>", "Chen Wei 陈伟", "Björk Guðmundsdóttir",
)
# Offset suffix of the created datetime: naive, UTC ("Z") or a numeric offset.
TZ_SUFFIXES = ("",) * 5 + ("Z",) * 3 + ("+02:00", "-05:00", "+09:00", "+05:30")

# (sku prefix, description (str(200)), unit price in cents)
PRODUCTS = (
    ("CAF-ESP", "Café 'Espresso' beans, 1 kg", 2490),
    ("KIT-SLT", "Salt & Pepper grinder set", 3450),
    ("KIT-TRC", "Crème brûlée torch", 2999),
    ("KIT-KTL", "Tea kettle 1.7 l – stainless steel", 4900),
    ("MUG-TKY", "東京 souvenir mug (350 ml)", 1500),
    ("MON-27K", 'Monitor 27" 4K <IPS>', 32900),
    ("CAB-HDM", "HDMI cable 2 m, \"high speed\"", 999),
    ("BK-GRW", "Gräfin Wąs: Die Straße nach Łódź (paperback)", 1890),
    ("TOY-BLD", "Building blocks 500 pcs — ages 6+", 3999),
    ("TEA-MAT", "抹茶 matcha powder 100 g", 2250),
    ("SOK-WOL", "Merino wool socks, 3 pairs", 2100),
    ("LMP-DSK", "Desk lamp, LED, dimmable & USB-C", 5490),
    ("PEN-FNT", "Fountain pen, nib \"M\" — Pelikan's classic", 12900),
    ("CHS-GRY", "Gruyère AOP, 400 g (keep < 8 °C)", 1375),
    ("UMB-XL", "Umbrella XL 'Storm' ☂", 2890),
    ("HDP-NC", "Noise-cancelling headphones", 24900),
    ("BAG-TOT", "Canvas tote bag – São Paulo edition", 1200),
    ("PZL-1K", "Puzzle 1000 pcs: Kraków Old Town", 2599),
)
QUANTITIES = (1,) * 10 + (2,) * 5 + (3,) * 2 + (4, 5, 10)
DISCOUNT_BP = (0,) * 12 + (500, 500, 1000, 1000, 1250, 1500, 2000, 3333)
# 0-5 lines, mean 2.55: weights 1:4:5:5:3:2 out of 20.
LINE_COUNTS = (0,) + (1,) * 4 + (2,) * 5 + (3,) * 5 + (4,) * 3 + (5,) * 2
# 1-3 payments for paid orders (unpaid orders have none).
PAYMENT_COUNTS = (1,) * 7 + (2,) * 2 + (3,)
PAYMENT_METHODS = (
    ("card",) * 5 + ("paypal",) * 2 + ("bank_transfer", "voucher", "cash_on_delivery")
)
DISCOUNT_CENTS = (0,) * 8 + (500, 1000)

# Free text for <comment> (text, 80-400 characters): escapes, quotes, emoji, accents.
COMMENT_FRAGMENTS = (
    "Customer asked: \"Can you deliver before 10 am?\" — we said we'd try.",
    "Gift for Zoë's birthday 🎁, please don't include the invoice.",
    "Ring twice & leave with the neighbour (flat 3 < flat 4).",
    "Paid with voucher <SPRING-24> & card; check the split.",
    "Address verified by phone ☎ on Monday; the street is 'Rämistrasse', not 'Ramistrasse'.",
    "Kunde möchte die Lieferung an die Packstation — Nr. > 100.",
    "Le client a appelé : « livraison rapide SVP » 🚚",
    "Reorder of #4711; last time the box arrived damaged 📦 :(",
    "VIP — handle with care ✨; the 'fragile' flag is set & confirmed.",
    "Entrega em São Paulo: portaria fecha às 18h, \"interfone 12\".",
    "Zamówienie z Krakowa, proszę o fakturę VAT & paragon.",
    "東京の倉庫から発送してください。よろしくお願いします 🙏",
    "Price match requested: competitor shows 19.99 < our 24.90 😬",
    "Note to ops: if weight > 30 kg use courier & add surcharge.",
    "Customer's e-mail bounced once; use the phone number instead.",
    "\"Leave at the door\" they said; the door is behind the gate <code 1234>.",
    "😀 Happy repeat customer, third order this month!",
    "Alt. recipient: Mr. & Mrs. O'Brien, same address.",
)
# Text for the CDATA <note>: markup-like text that CDATA keeps literal, some with "]]>".
NOTE_FRAGMENTS = (
    "<tags>fragile, gift</tags>",
    "<tags>priority</tags> <b>call first</b>",
    "if qty > 3 && stock < 10 then split",
    "legacy flag: ]]> kept verbatim",
    "raw: <![CDATA[nested]]> from the old system",
    "Zoë says: \"handle with care\" & 'thanks'",
    "<tags>b2b, net30</tags>",
    "route → depot 7 ⟶ customer",
    "checked ✔",
)
XML_COMMENTS = (
    " legacy import: source=ERP-7, checked ",
    " customer merged from CRM & shop accounts ",
    " São Paulo depot override ",
)
PROCESSING_INSTRUCTIONS = (
    'audit source="legacy" batch="7"',
    'xml-stylesheet type="text/xsl" href="order.xsl"',
    "review pending",
)
