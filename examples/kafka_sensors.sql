-- Sensor readings from a Kafka topic: JSON records such as
--   {"sensor_id": "s1", "temperature": 21.5, "ts": "2026-01-01T00:00:01Z"}
-- (ts may also be an epoch number in seconds, milliseconds, microseconds or nanoseconds).
-- See the README section "Reading from Kafka" for a broker and a producer command.

CREATE SOURCE kafka_readings (
    sensor_id   TEXT,
    temperature DOUBLE PRECISION,
    ts          TIMESTAMPTZ,
    WATERMARK FOR ts AS ts - INTERVAL '5 seconds'
)
INCLUDE partition AS kafka_partition
INCLUDE offset AS kafka_offset
WITH (
    connector = 'kafka',
    topic = 'sensors',
    properties.bootstrap.server = '127.0.0.1:9092',
    scan.startup.mode = 'earliest',
    source.idle_timeout = '2s'
)
FORMAT PLAIN ENCODE JSON;

-- Per-sensor statistics over 10-second tumbling windows.
CREATE MATERIALIZED VIEW kafka_sensor_stats AS
SELECT sensor_id, window_start, window_end,
       count(*)         AS readings,
       avg(temperature) AS avg_temp,
       max(temperature) AS max_temp
FROM TUMBLE(kafka_readings, ts, INTERVAL '10 seconds')
GROUP BY sensor_id, window_start, window_end;
