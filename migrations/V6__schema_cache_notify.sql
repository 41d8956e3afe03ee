-- The data API's schema cache is reloaded when DDL runs: an event trigger
-- sends NOTIFY basalt_schema at the end of every DDL command (delivered when
-- the transaction commits), and every Basalt replica listens on the channel.
--
-- Event triggers need a superuser. On a managed database where the migration
-- user is not one, the trigger is skipped with a notice, and the cache is
-- refreshed by `NOTIFY basalt_schema` (send it after migrations), by
-- POST /admin/v1/schema/reload, or on a request naming an unknown table.
CREATE OR REPLACE FUNCTION basalt.notify_schema_change() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('basalt_schema', '');
END
$$;

DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        DROP EVENT TRIGGER IF EXISTS basalt_schema_ddl;
        CREATE EVENT TRIGGER basalt_schema_ddl ON ddl_command_end
            EXECUTE FUNCTION basalt.notify_schema_change();
        DROP EVENT TRIGGER IF EXISTS basalt_schema_drop;
        CREATE EVENT TRIGGER basalt_schema_drop ON sql_drop
            EXECUTE FUNCTION basalt.notify_schema_change();
    ELSE
        RAISE NOTICE 'not a superuser: no event trigger; send NOTIFY basalt_schema after DDL';
    END IF;
END
$$;
