-- Nexmark q7: the bids at the highest price of each 10 s window (bids joined with the window's
-- maximum). The same rows as flink_tumble_count.sql (10 bids per ms of event time), watermark
-- 4 s behind, blackhole sink. Joined on `window_time` (a time attribute) rather than the
-- published query's `window_end`, so Flink runs an interval join with bounded state instead of
-- a regular join holding every bid (which did not finish 10 M rows in 15 CPU-minutes with a
-- 4 GB heap); the bounds select the window's own bids, as Weir's query does.
CREATE TABLE bid (
  id BIGINT,
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  ts AS TO_TIMESTAMP_LTZ(id / 10, 3),
  WATERMARK FOR ts AS ts - INTERVAL '4' SECOND
) WITH (
  'connector' = 'datagen',
  'rows-per-second' = '1000000000',
  'fields.id.kind' = 'sequence',
  'fields.id.start' = '1',
  'fields.id.end' = '${ROWS}',
  'fields.auction.min' = '1000',
  'fields.auction.max' = '10999',
  'fields.bidder.min' = '1000',
  'fields.bidder.max' = '100999',
  'fields.price.min' = '100',
  'fields.price.max' = '100000000'
);
CREATE TABLE sink (
  auction BIGINT,
  price BIGINT,
  bidder BIGINT,
  ts TIMESTAMP_LTZ(3)
) WITH ('connector' = 'blackhole');
INSERT INTO sink
SELECT B.auction, B.price, B.bidder, B.ts
FROM bid B
JOIN (
  SELECT MAX(price) AS maxprice, window_time
  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end, window_time
) B1
ON B.price = B1.maxprice
WHERE B.ts > B1.window_time - INTERVAL '10' SECOND AND B.ts <= B1.window_time;
