-- Inline testing mode: the id of the caller's open transaction, to run held jobs once it commits.
SELECT txid_current()
