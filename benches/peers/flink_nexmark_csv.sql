-- Nexmark's persons, auctions and bids from the CSV files the joins bench writes from Weir's
-- generator (`cargo bench --bench joins -- --dump-nexmark DIR`), so Flink and Weir read the same
-- rows. Event times are epoch milliseconds; watermarks 4 s behind, as Weir's sources.
CREATE TABLE person (
  id BIGINT,
  name STRING,
  city STRING,
  state STRING,
  ms BIGINT,
  date_time AS TO_TIMESTAMP_LTZ(ms, 3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${CSV}/person.csv', 'format' = 'csv');
CREATE TABLE auction (
  id BIGINT,
  seller BIGINT,
  category BIGINT,
  ms BIGINT,
  expires_ms BIGINT,
  date_time AS TO_TIMESTAMP_LTZ(ms, 3),
  expires AS TO_TIMESTAMP_LTZ(expires_ms, 3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${CSV}/auction.csv', 'format' = 'csv');
CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  ms BIGINT,
  date_time AS TO_TIMESTAMP_LTZ(ms, 3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${CSV}/bid.csv', 'format' = 'csv');
