-- Nexmark q11: bids per bidder session, a session closing after 10 s without a bid.
-- The same rows as flink_tumble_count.sql (10 bids per ms of event time, 100,000 bidders),
-- watermark 4 s behind, blackhole sink.
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
  bidder BIGINT,
  bid_count BIGINT,
  window_start TIMESTAMP_LTZ(3),
  window_end TIMESTAMP_LTZ(3)
) WITH ('connector' = 'blackhole');
INSERT INTO sink
SELECT bidder, COUNT(*) AS bid_count, window_start, window_end
FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
