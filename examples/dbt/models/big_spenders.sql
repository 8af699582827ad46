select customer, spent from {{ ref('spend') }} where spent > 10
