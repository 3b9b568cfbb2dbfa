-- Name-prefix searches return entries in (name, id_card) order, so one index serves
-- both the prefix range and the order and a search reads only `limit` entries.
CREATE INDEX IF NOT EXISTS blacklist_name_id_card ON blacklist (name, id_card);
DROP INDEX IF EXISTS blacklist_name;
