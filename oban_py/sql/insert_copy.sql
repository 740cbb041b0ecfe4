-- A batch of plain jobs as rows of text (insert/copy_text.py), with the ids insert_copy_ids.sql
-- reserved; the columns left out take the table's defaults.
COPY {prefix}.oban_jobs ({columns}) FROM STDIN
