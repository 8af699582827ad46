-- Weir quickstart: a simulated plant of 200 sensors reporting 1,000 readings a second,
-- and a few views over it. The server runs this at start (unless --no-demo).

CREATE SOURCE readings (
    sensor_id    TEXT,
    equipment_id TEXT,
    temperature  DOUBLE PRECISION,
    humidity     DOUBLE PRECISION,
    pressure     DOUBLE PRECISION,
    vibration    DOUBLE PRECISION,
    ts           TIMESTAMPTZ,
    is_anomaly   BOOLEAN,
    WATERMARK FOR ts AS ts - INTERVAL '2 seconds'
) WITH (
    connector = 'datagen',
    generator = 'sensors',
    sensors = '200',
    rate = '1000',
    out_of_order = '1s',
    anomaly_rate = '0.002'
);

-- Per-sensor statistics over 10-second tumbling windows; open windows update live.
CREATE MATERIALIZED VIEW sensor_stats_10s AS
SELECT sensor_id, window_start, window_end,
       count(*)                                AS readings,
       avg(temperature)                        AS avg_temp,
       max(temperature)                        AS max_temp,
       stddev(temperature)                     AS sd_temp,
       approx_percentile_cont(vibration, 0.99) AS p99_vibration
FROM TUMBLE(readings, ts, INTERVAL '10 seconds')
GROUP BY sensor_id, window_start, window_end;

-- Per-equipment averages per minute, final rows only.
CREATE MATERIALIZED VIEW equipment_1m AS
SELECT equipment_id, window_start, window_end,
       count(*) AS readings, avg(temperature) AS avg_temp, max(vibration) AS max_vibration
FROM TUMBLE(readings, ts, INTERVAL '1 minute')
GROUP BY equipment_id, window_start, window_end
EMIT ON WINDOW CLOSE;

-- Readings the simulator labelled as anomalies (an append-only filter view).
CREATE MATERIALIZED VIEW hot_readings AS
SELECT sensor_id, equipment_id, ts, temperature, vibration
FROM readings
WHERE is_anomaly;

-- Per-sensor anomaly detection, scored incrementally as the watermark passes each reading
-- (a sliding median and MAD of each sensor's last 300 readings). More in anomaly_alerts.sql.
CREATE MATERIALIZED VIEW temperature_anomalies AS
SELECT sensor_id, ts, temperature, r['score'] AS score, r['severity'] AS severity, r['expected'] AS expected
FROM (SELECT sensor_id, ts, temperature,
             anomaly_mad(temperature, window => 300) OVER (PARTITION BY sensor_id ORDER BY ts) AS r
      FROM readings)
WHERE r['is_anomaly'];
