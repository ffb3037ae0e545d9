"""The API's vocabulary: the fields a column may feed, statuses, types, country codes."""

from __future__ import annotations

from typing import Literal, get_args

# --- the API's vocabulary -----------------------------------------------------------------

ProspectStatus = Literal[
    "Sourced", "Contacted", "Responded", "Interested", "Not interested", "Do not contact"
]
UpdatedByType = Literal["user", "source_contact", "other", "app"]

#: Canonical spellings of `prospect_status` (the API compares them exactly).
PROSPECT_STATUSES: tuple[str, ...] = get_args(ProspectStatus)
#: Allowed `updated_by.type` values.
UPDATED_BY_TYPES: tuple[str, ...] = get_args(UpdatedByType)
#: Custom candidate fields are `custom_fields.<name>`, the name kept as written.
CUSTOM_FIELDS_PREFIX = "custom_fields."
#: Resume files Comeet accepts.
RESUME_EXTENSIONS: tuple[str, ...] = (".pdf", ".doc", ".docx")
#: Comeet refuses files over 6 MB (403 file_size_limit); refusing them here saves a request.
MAX_FILE_BYTES = 6 * 1024 * 1024

_ORDERED_FIELDS: tuple[str, ...] = (
    "uid",
    "partner_candidate_id",
    "first_name",
    "middle_name",
    "last_name",
    "email",
    "phone",
    "mobile_phone",
    "national_id",
    "linkedin_url",
    "salary_expectations",
    "prospect_status",
    "note",
    "resume",
    "picture",
    "links",
    "files",
    "updated_by.type",
    "updated_by.name",
    "updated_by.email",
    "source_contact.full_name",
    "source_contact.email",
    "source_contact.phone",
    "address.country",
    "address.city",
    "address.state",
    "address.zip",
    "address.street",
)
#: Every dotted API path a column may feed, besides `custom_fields.<name>`.
FIELDS: frozenset[str] = frozenset(_ORDERED_FIELDS)
#: Top-level body keys whose dotted leaves nest into an object (`address.country`).
OBJECT_FIELDS: frozenset[str] = frozenset(
    {f.split(".", 1)[0] for f in FIELDS if "." in f} | {"custom_fields"}
)

#: ISO 3166-1 alpha-2: the 249 officially assigned codes (what Comeet checks, 400
#: incorrect_country_code otherwise). Embedded so a run needs no extra package.
ISO_COUNTRY_CODES: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ  EC EE EG EH ER ES ET  FI FJ FK FM FO FR
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY  HK HM HN HR HT HU
    ID IE IL IM IN IO IQ IR IS IT  JE JM JO JP  KE KG KH KI KM KN KP KR KW KY KZ
    LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ  OM  PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA  RE RO RS RU RW  SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ  UA UG UM US UY UZ
    VA VC VE VG VI VN VU  WF WS  YE YT  ZA ZM ZW
    """.split()  # noqa: SIM905 (a grid of codes reads better than 249 quoted strings)
)

#: Fields that hold digits as text: a number cell has lost their leading zeros and '+', and
#: scientific notation has lost their last digits (contract section 5).
DIGIT_FIELDS: frozenset[str] = frozenset(
    {
        "phone",
        "mobile_phone",
        "national_id",
        "address.zip",
        "partner_candidate_id",
        "source_contact.phone",
    }
)
