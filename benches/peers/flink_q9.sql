-- Nexmark q9 (winning bid per auction), as in the Nexmark suite: a join, then Top-1.
CREATE TABLE sink (id BIGINT, seller BIGINT, auction BIGINT, bidder BIGINT, price BIGINT)
WITH ('connector' = 'blackhole');
INSERT INTO sink
SELECT id, seller, auction, bidder, price
FROM (
  SELECT A.id, A.seller, B.auction, B.bidder, B.price,
         ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC) AS rownum
  FROM auction A, bid B
  WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
)
WHERE rownum <= 1;
