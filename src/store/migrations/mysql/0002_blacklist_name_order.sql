-- Name-prefix searches return entries in (name, id_card) order, so one index serves
-- both the prefix range and the order and a search reads only `limit` entries.
-- (Run again after an interruption, "duplicate key name" and "can't drop" mean the
-- statement was already applied, and the migration runner takes them as done.)
CREATE INDEX blacklist_name_id_card ON blacklist (name, id_card);
DROP INDEX blacklist_name ON blacklist;
