-- Total transaction amount per user per day: sales only (status SUCCESS).
-- Reads the v_* views, which collapse ReplacingMergeTree versions with FINAL and hide deleted
-- rows, so the totals are right before any background merge and loading twice never doubles.
SELECT
    u.name                AS user_name,
    f.transaction_date    AS transaction_date,
    sum(f.amount)         AS total_daily_spending
FROM analytics_dw.v_fact_sales AS f
LEFT JOIN analytics_dw.v_dim_users AS u ON f.user_key = u.user_key
WHERE f.status = 'SUCCESS'
GROUP BY user_name, transaction_date
ORDER BY transaction_date, user_name;
