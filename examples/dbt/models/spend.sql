select customer, sum(amount) as spent, count(*) as orders
from {{ ref('orders') }}
group by customer
