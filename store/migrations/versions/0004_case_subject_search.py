# SPDX-License-Identifier: GPL-3.0-or-later
"""case subject search: a full-text index over cases.subject, and an index in listing order

Revision ID: 0004
Revises: 0003

SQLite: an FTS5 table with external content (it stores only the index, the text stays in cases), kept
in step by triggers, so every writer (intake, import, the CLI, a hand-written INSERT) updates it
without the code having to remember. PostgreSQL: a GIN expression index; store.cases builds its query
on exactly the same expression (SUBJECT_TSVECTOR_PG there), or the planner would not use the index.

Both split the subject at every punctuation and space character before indexing, so that a search
for "example" finds "jane@example.com" and "log" finds "/var/log/syslog" on both databases (left
alone, PostgreSQL's parser keeps e-mail addresses, paths and version numbers as single tokens, which
SQLite's unicode61 tokenizer does not). Diacritics are kept on SQLite ("störung" does not find
"storung"), as PostgreSQL's 'simple' configuration does.

Beware: SQLite batch migrations rebuild a table by copying it and dropping the original, which drops
its triggers. A later revision that batch-alters cases must create the three triggers below again.
"""

from __future__ import annotations

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

FTS_SQLITE = [
    # rowid is cases.id; content= lets FTS5 read the subject back from cases when it needs it.
    "CREATE VIRTUAL TABLE cases_subject_fts USING fts5("
    "subject, content='cases', content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER cases_subject_fts_ai AFTER INSERT ON cases BEGIN "
    "INSERT INTO cases_subject_fts(rowid, subject) VALUES (new.id, new.subject); END",
    # An external-content table must be told the old text to remove its tokens.
    "CREATE TRIGGER cases_subject_fts_ad AFTER DELETE ON cases BEGIN "
    "INSERT INTO cases_subject_fts(cases_subject_fts, rowid, subject) VALUES ('delete', old.id, old.subject); END",
    "CREATE TRIGGER cases_subject_fts_au AFTER UPDATE OF subject ON cases BEGIN "
    "INSERT INTO cases_subject_fts(cases_subject_fts, rowid, subject) VALUES ('delete', old.id, old.subject); "
    "INSERT INTO cases_subject_fts(rowid, subject) VALUES (new.id, new.subject); END",
    # Index the cases that exist already.
    "INSERT INTO cases_subject_fts(cases_subject_fts) VALUES ('rebuild')",
]

# Must stay textually the same expression as store.cases.SUBJECT_TSVECTOR_PG.
FTS_POSTGRESQL = (
    "CREATE INDEX ix_case_subject_fts ON cases USING gin "
    "(to_tsvector('simple'::regconfig, regexp_replace(subject, '[[:punct:][:space:]]+', ' ', 'g')))"
)


def upgrade() -> None:
    # The listing order, as an index: a search for a word in half of all cases reads the newest cases
    # in this order until the limit is filled, instead of sorting every match (PostgreSQL's planner
    # chooses it by itself, store.cases asks SQLite for it), and `casemail cases` without a filter
    # reads 1,000 index entries instead of sorting the whole table.
    op.create_index("ix_case_updated", "cases", ["updated_at", "number"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in FTS_SQLITE:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(FTS_POSTGRESQL)
    # Other databases are not supported; store.cases falls back to LIKE when the index is absent.


def downgrade() -> None:
    op.drop_index("ix_case_updated", table_name="cases")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("cases_subject_fts_ai", "cases_subject_fts_ad", "cases_subject_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS cases_subject_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_case_subject_fts")
