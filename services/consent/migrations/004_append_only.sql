-- What was decided and how an agreement changed are history: only ever added to.
SELECT homeroom_append_only(t) FROM unnest(ARRAY['agreement_history', 'decisions']) AS t;
