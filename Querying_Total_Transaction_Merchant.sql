-- Total number of sales (status SUCCESS) per merchant.
-- Reads the v_* views, which collapse ReplacingMergeTree versions with FINAL and hide deleted
-- rows, so the counts are right before any background merge and loading twice never doubles.
SELECT
    m.name                    AS merchant_name,
    m.category                AS category,
    count(f.transaction_id)   AS total_transaction_count
FROM analytics_dw.v_fact_sales AS f
LEFT JOIN analytics_dw.v_dim_merchants AS m ON f.merchant_key = m.merchant_key
WHERE f.status = 'SUCCESS'
GROUP BY merchant_name, category
ORDER BY total_transaction_count DESC, merchant_name;
