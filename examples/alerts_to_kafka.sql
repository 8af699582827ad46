-- Anomaly alerts into a Kafka topic, exactly once, for on-call tooling.
--
-- Needs examples/anomaly_alerts.sql first (it defines sensor_alerts) and a broker with a topic
-- named alerts (see the README's "Reading from Kafka" for a local one):
--   psql -h 127.0.0.1 -p 5488 -U weir -f examples/anomaly_alerts.sql
--   psql -h 127.0.0.1 -p 5488 -U weir -f examples/alerts_to_kafka.sql
--
-- Each OPEN / ESCALATE / CLOSE event becomes one JSON record keyed by sensor, committed in a
-- Kafka transaction with Weir's checkpoint: read the topic with isolation.level=read_committed.

CREATE SINK alerts_out FROM sensor_alerts WITH (
    connector = 'kafka',
    topic = 'alerts',
    properties.bootstrap.server = '127.0.0.1:9092',
    key = 'sensor_id'
) FORMAT PLAIN ENCODE JSON;

-- History for the data lake: every verdict as Parquet, one directory per sensor.
CREATE SINK verdicts_history FROM sensor_verdicts WITH (
    connector = 'parquet',
    path = 'weir-data/lake/sensor_verdicts',
    partition_by = 'sensor_id',
    file.max_age = '5 minutes'
);

-- Then: SHOW SINKS;  SELECT name, status, rows_written, lag_ms, last_error FROM weir_sinks;
