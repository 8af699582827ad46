-- Correlating alerts on the sensors generator: the same equipment alerting again within 10
-- minutes (an interval self-join), and equipment next to each other on a line alerting within
-- 10 minutes (each alert placed through the equipment table, then an interval self-join on the
-- line with adjacent positions).
-- Run it against a server: psql -h 127.0.0.1 -p 5488 -U weir -f examples/correlated_alerts.sql

-- Where each piece of equipment stands (50 sensors sit on eq-000 … eq-005).
CREATE TABLE IF NOT EXISTS equipment_layout (equipment_id TEXT PRIMARY KEY, line TEXT NOT NULL, position INT NOT NULL);
INSERT INTO equipment_layout VALUES
    ('eq-000', 'L1', 1), ('eq-001', 'L1', 2), ('eq-002', 'L1', 3),
    ('eq-003', 'L2', 1), ('eq-004', 'L2', 2), ('eq-005', 'L2', 3)
ON CONFLICT (equipment_id) DO UPDATE SET line = EXCLUDED.line, position = EXCLUDED.position;

CREATE SOURCE fab (
    sensor_id    TEXT,
    equipment_id TEXT,
    temperature  DOUBLE PRECISION,
    ts           TIMESTAMPTZ,
    is_anomaly   BOOLEAN,
    WATERMARK FOR ts AS ts - INTERVAL '2 seconds'
) WITH (connector = 'datagen', generator = 'sensors', sensors = '50', rate = '500',
        out_of_order = '1s', anomaly_rate = '0.002');

-- One row per reading the per-sensor MAD detector flags, placed on its line as it passes
-- (FOR SYSTEM_TIME AS OF PROCTIME(): the layout as it is when the alert is raised).
CREATE MATERIALIZED VIEW fab_alerts WITH (state_ttl = '1 hour') AS
SELECT a.sensor_id, a.equipment_id, l.line, l.position, a.ts, a.temperature, a.score
FROM (SELECT sensor_id, equipment_id, ts, temperature, mad['score'] AS score, mad['is_anomaly'] AS flagged
      FROM (SELECT sensor_id, equipment_id, ts, temperature,
                   anomaly_mad(temperature, window => 600) OVER (PARTITION BY sensor_id ORDER BY ts) AS mad
            FROM fab)) AS a
JOIN equipment_layout FOR SYSTEM_TIME AS OF PROCTIME() AS l ON a.equipment_id = l.equipment_id
WHERE a.flagged;

-- Temporal correlation: an alert followed by another on the same equipment within 10 minutes.
-- Each alert is held 10 minutes of event time, then leaves the join's state.
CREATE MATERIALIZED VIEW repeat_alerts AS
SELECT a.equipment_id, a.sensor_id AS first_sensor, a.ts AS first_ts,
       b.sensor_id AS next_sensor, b.ts AS next_ts
FROM fab_alerts AS a JOIN fab_alerts AS b
  ON a.equipment_id = b.equipment_id
 AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL '10 minutes';

-- Spatial correlation: an alert followed within 10 minutes by one on the neighbouring
-- equipment of the same line.
CREATE MATERIALIZED VIEW neighbour_alerts AS
SELECT a.line, a.equipment_id, a.ts AS first_ts, b.equipment_id AS neighbour, b.ts AS next_ts
FROM fab_alerts AS a JOIN fab_alerts AS b
  ON a.line = b.line
 AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL '10 minutes'
 AND abs(a.position - b.position) = 1;

-- Try:
--   SELECT equipment_id, count(*) AS repeats FROM repeat_alerts GROUP BY 1 ORDER BY 2 DESC;
--   SELECT line, equipment_id, neighbour, count(*) FROM neighbour_alerts GROUP BY 1, 2, 3 ORDER BY 4 DESC;
--   EXPLAIN CREATE MATERIALIZED VIEW x AS SELECT * FROM repeat_alerts;
