-- Anomaly detection in SQL on the sensors generator: per-sensor detectors, a weighted vote
-- with severity, and an alerts view with one OPEN / ESCALATE / CLOSE event per incident.
-- Run it against a server: psql -h 127.0.0.1 -p 5488 -U weir -f examples/anomaly_alerts.sql

CREATE SOURCE plant (
    sensor_id   TEXT,
    temperature DOUBLE PRECISION,
    vibration   DOUBLE PRECISION,
    ts          TIMESTAMPTZ,
    is_anomaly  BOOLEAN,                 -- the simulator's ground truth, to check the detectors
    WATERMARK FOR ts AS ts - INTERVAL '2 seconds'
) WITH (connector = 'datagen', generator = 'sensors', sensors = '50', rate = '500',
        out_of_order = '1s', anomaly_rate = '0.002');

-- Every reading, scored per sensor in event-time order as the watermark passes it. Each detector
-- keeps its own state per sensor (checkpointed with the view).
CREATE MATERIALIZED VIEW sensor_health WITH (state_ttl = '1 hour') AS
SELECT sensor_id, ts, temperature, vibration, is_anomaly,
       anomaly_mad(temperature, window => 600) OVER w                      AS temp_mad,
       anomaly_zscore(vibration, method => 'ewma',
                      half_life => INTERVAL '1 minute') OVER w            AS vib_z,
       changepoint_cusum(temperature, k => 0.5, h => 8) OVER w             AS temp_shift,
       -- Both inputs at once; machine['attribution'] says which one moved.
       anomaly_iforest(ROW(temperature, vibration), window => 512, sample => 128) OVER w AS machine
FROM plant
WINDOW w AS (PARTITION BY sensor_id ORDER BY ts);

-- One verdict per reading: the detectors' p-values, weighted.
CREATE MATERIALIZED VIEW sensor_verdicts AS
SELECT sensor_id, ts, is_anomaly,
       anomaly_vote(ARRAY[temp_mad, vib_z, temp_shift], weights => ARRAY[0.5, 0.3, 0.2]) AS verdict
FROM sensor_health;

-- Incidents, not rows: a sink of this view gets one event when an incident opens, one if it
-- escalates to CRITICAL, one when it has been normal for 10 seconds.
CREATE MATERIALIZED VIEW sensor_alerts AS
SELECT sensor_id, ts,
       alert['event'] AS event, alert['severity'] AS severity,
       alert['started_at'] AS started_at, alert['peak_score'] AS peak_score
FROM (SELECT sensor_id, ts,
             anomaly_alert(verdict, cooldown => INTERVAL '10 seconds') OVER (PARTITION BY sensor_id ORDER BY ts) AS alert
      FROM sensor_verdicts)
WHERE alert IS NOT NULL;

-- Try:
--   SELECT * FROM sensor_alerts ORDER BY ts DESC LIMIT 10;
--   SELECT is_anomaly, verdict['severity'] AS severity, count(*) FROM sensor_verdicts GROUP BY 1, 2 ORDER BY 1, 2;
--   SELECT sensor_id, ts, machine['severity'], machine['attribution']['temperature'] AS temperature_share,
--          machine['attribution']['vibration'] AS vibration_share FROM sensor_health WHERE machine['is_anomaly'] LIMIT 5;
--   SELECT sensor_id, ts, temperature, temp_mad['expected'], temp_mad['lower'], temp_mad['upper']
--     FROM sensor_health WHERE temp_mad['is_anomaly'] ORDER BY ts DESC LIMIT 5;
