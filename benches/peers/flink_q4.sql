-- Nexmark q4 (average closing price per category), as in the Nexmark suite.
CREATE TABLE sink (id BIGINT, final_price DOUBLE) WITH ('connector' = 'blackhole');
INSERT INTO sink
SELECT Q.category, AVG(CAST(Q.final AS DOUBLE))
FROM (
  SELECT MAX(B.price) AS final, A.category
  FROM auction A, bid B
  WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
  GROUP BY A.id, A.category
) Q
GROUP BY Q.category;
