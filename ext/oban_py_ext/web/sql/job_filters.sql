-- One condition per job list filter, as "name: condition"; jobs_page.sql joins those in use
-- with AND. Values are parameters; args and tags match as subsets (GIN containment), text
-- search reads the args' JSON text (no index can serve a substring).
state: state = %(state)s
queue: queue = %(queue)s
worker: worker = %(worker)s
tags: tags @> %(tags)s::text[]
args: args @> %(args)s::jsonb
text: strpos(args::text, %(text)s::text) > 0
before: id < %(cursor)s::bigint
after: id > %(cursor)s::bigint
