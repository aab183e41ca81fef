"""ketamine-catalog harvester: PubMed E-utilities -> parsed records -> tags -> SQLite.

Pipeline modules, one stage each:
  eutils.py      HTTP to NCBI: rate limit, retries, tool/email/api_key on every call
  query.py       the topic query (versioned) and its local evaluation
  search.py      slicing the query under PubMed's 9,999 cap, incremental windows
  pubmed_xml.py  bytes -> records (pure, streaming)
  store.py       records -> SQLite (schema migrations, upserts, FTS, runs)
  harvest.py     one harvest run: search -> fetch -> parse -> store, with its run record
  cli.py         the click CLI over those functions (`python -m harvest ...`)
"""

__version__ = "0.1.0"
