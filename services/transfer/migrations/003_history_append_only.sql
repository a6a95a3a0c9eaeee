-- A case's steps are history: only ever added to.
SELECT homeroom_append_only('transfer_history');
