"""Central: ingest of signed batches, the store, the balance engine and loss analytics.

Read in this order: ``model`` (meters and balance groups), ``csvio`` (imports with
per-line errors), ``store`` (SQLite or PostgreSQL), ``ingest`` (MQTT batches in,
acknowledgements out), ``vee`` (gaps and estimates), ``balance`` (hourly and daily
balances), ``analytics`` (next-day alerts). docs/central.md is the user's guide.
"""
