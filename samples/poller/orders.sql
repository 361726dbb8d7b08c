-- A demo source for the database poller (ingest.sources.poller): an orders table in the
-- bridge's own database and the view the poller reads. Idempotent; the customers are those of
-- samples/customers.csv.
--
--   psql "$DATABASE_URL" -f samples/poller/orders.sql
--   POLLER_QUERY='SELECT * FROM bridge_demo_orders_ready' python -m ingest.sources poller --once
--
-- Then `UPDATE bridge_demo_orders SET status = 'shipped', shipped_at = now() WHERE order_id =
-- 'ORD-1001'` and poll again: one order.shipped event (a new source_id), the completed one is
-- not sent again.

CREATE TABLE IF NOT EXISTS bridge_demo_orders (
    order_id        text PRIMARY KEY,
    status          text NOT NULL CHECK (status IN ('pending', 'completed', 'shipped')),
    customer_account text,
    customer_email  text,
    customer_name   text,
    total           numeric(14, 2) NOT NULL,
    currency        text NOT NULL DEFAULT 'NGN',
    items           integer NOT NULL DEFAULT 1,
    carrier         text,
    tracking_number text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    shipped_at      timestamptz
);

-- One row per (order, status) worth a message: the status is part of source_id, so an order
-- that ships after completing is a new row; the reference is the order id, so the Siteti
-- reference (`dbpoll:ORD-1001`) groups the order's messages. Only recent changes: the
-- poller reads the whole view every poll.
CREATE OR REPLACE VIEW bridge_demo_orders_ready AS
SELECT o.order_id || ':' || o.status                  AS source_id,
       CASE o.status WHEN 'completed' THEN 'order.completed'
                     WHEN 'shipped'   THEN 'order.shipped' END AS event_type,
       o.order_id                                      AS transaction_reference,
       o.total                                         AS amount,
       o.currency,
       o.customer_account                              AS account_number,
       o.customer_email                                AS email,
       o.customer_name                                 AS name,
       coalesce(o.shipped_at, o.updated_at)            AS occurred_at,
       o.order_id,
       o.items,
       o.carrier,
       o.tracking_number
  FROM bridge_demo_orders AS o
 WHERE o.status IN ('completed', 'shipped')
   AND o.updated_at > now() - interval '7 days';

-- The poller reads it as the ingest role (bridge_ingest, created by the bridge's schema).
GRANT SELECT ON bridge_demo_orders_ready TO bridge_ingest;

INSERT INTO bridge_demo_orders
    (order_id, status, customer_account, customer_email, customer_name, total, items, carrier,
     tracking_number, shipped_at)
VALUES
    ('ORD-1001', 'completed', '0123456789', 'ada@example.com', 'Ada Obi', 18500.00, 2, NULL, NULL, NULL),
    ('ORD-1002', 'shipped', '0234567890', 'tunde@example.com', 'Tunde Bakare', 7250.50, 1, 'GIG Logistics', 'GIG-55810', now()),
    ('ORD-1003', 'pending', '0345678901', 'kemi@example.com', 'Kemi Adeyemi', 3000.00, 1, NULL, NULL, NULL)
ON CONFLICT (order_id) DO NOTHING;
