-- Fencing tokens and the indexes of the queries a booting node runs.
--
-- `fences` keeps, per scope (e.g. a stream id), the highest fencing token that has written. In
-- cluster mode an owner's write raises it in the same transaction, or is refused when a newer
-- owner's token is already there. Single-node mode writes unfenced and never touches this table.
CREATE TABLE fences (
    scope  TEXT    NOT NULL PRIMARY KEY,
    token  BIGINT  NOT NULL
);

-- `live_streams()`: the few live streams, not every stream ever made (`streams_tenant_status`
-- leads with the tenant, so it cannot serve a query over all tenants).
CREATE INDEX streams_live ON streams (seq) WHERE status = 'live';

-- `drops_to_recover()`: only drops not yet closed are indexed, so the boot query reads the drops
-- that may still change, however many closed ones have piled up.
CREATE INDEX drops_unclosed ON drops (seq) WHERE status IN ('open', 'sold_out');
