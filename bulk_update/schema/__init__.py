"""The API's fields, column-name matching and per-row validation.

Two jobs, in the order a run needs them:

1. `resolve_columns` decides, once per sheet, which API field each column feeds
   (contract section 4); a column it cannot place stops the run before anything is sent.
2. `validate_row` turns one row of text into values ready for the API, or into every
   problem of that row, each naming the column as the sheet spells it (section 5).

The package's modules: `fields` (the API's vocabulary), `cells` (each cell's rule in its two
forms: a cell at a time, and a column at a time for the columnar dry run), `columns` (header
matching), `rows` (row validation and the count of duplicate uids). The body the API accepts
is described by a test oracle (tests/api_body.py), not here: the product builds bodies only
from cells checked already.
"""

from __future__ import annotations

from .cells import _FILE_FIELDS as FILE_FIELDS  # the fields whose cells name files
from .cells import CellRule, ColumnCheck, column_check, escape_invisible, normalised_text, uid_check
from .cells import _show as shown_text  # a cell's text as the messages quote it
from .columns import names_uid, normalize_header, resolve_columns
from .fields import (
    CUSTOM_FIELDS_PREFIX,
    DIGIT_FIELDS,
    FIELDS,
    ISO_COUNTRY_CODES,
    MAX_FILE_BYTES,
    OBJECT_FIELDS,
    PROSPECT_STATUSES,
    RESUME_EXTENSIONS,
    UPDATED_BY_TYPES,
)
from .rows import (
    InvalidRow,
    RowValidator,
    UidTally,
    ValidRow,
    duplicate_uids_of_column,
    find_duplicate_uids,
    validate_row,
)

__all__ = [
    "CUSTOM_FIELDS_PREFIX",
    "DIGIT_FIELDS",
    "FIELDS",
    "FILE_FIELDS",
    "ISO_COUNTRY_CODES",
    "MAX_FILE_BYTES",
    "OBJECT_FIELDS",
    "PROSPECT_STATUSES",
    "RESUME_EXTENSIONS",
    "UPDATED_BY_TYPES",
    "CellRule",
    "ColumnCheck",
    "InvalidRow",
    "RowValidator",
    "UidTally",
    "ValidRow",
    "column_check",
    "duplicate_uids_of_column",
    "escape_invisible",
    "find_duplicate_uids",
    "names_uid",
    "normalised_text",
    "normalize_header",
    "resolve_columns",
    "shown_text",
    "uid_check",
    "validate_row",
]
