-- Inline testing mode: 'committed', 'aborted' or 'in progress' for a transaction id seen earlier.
SELECT txid_status(%(txid)s::bigint)
