-- The reference: ClickHouse pulls the source itself (the mysql() table function) and runs the
-- pipeline's transform in SQL (the same SplitMix64 surrogate keys, categories, dates, versions)
-- into a table with fact_sales' DDL. The bench fills in {target} (the database), {mysql} (the
-- table function) and {version}: ClickHouse 18.16 maps DECIMAL to String (toDecimal64 parses
-- it exactly) and DATETIME(6) to DateTime (so _version keeps whole seconds there); chDB 26.x
-- maps them to Decimal and DateTime64(6) (toUnixTimestamp64Micro).
INSERT INTO {target}.fact_sales
    (transaction_id, user_key, merchant_key, amount, amount_category, status,
     transaction_time, transaction_date, updated_at, _version, _deleted)
SELECT
    src_id,
    bitXor(u2, bitShiftRight(u2, 31)),
    bitXor(m2, bitShiftRight(m2, 31)),
    money,
    multiIf(money < 50000, 'Low', money < 100000, 'Medium', 'High'),
    src_status,
    toDateTime(src_time),
    toDate(toDateTime(src_time)),
    toDateTime(src_updated),
    {version},
    toUInt8(0)
FROM (
    SELECT
        src_id, src_status, src_time, src_updated,
        toDecimal64(src_amount, 2) AS money,
        bitXor(toUInt64(src_user), toUInt64(1152921504606846976)) AS u0,
        bitXor(u0, bitShiftRight(u0, 30)) * toUInt64(13787848793156543929) AS u1,
        bitXor(u1, bitShiftRight(u1, 27)) * toUInt64(10723151780598845931) AS u2,
        bitXor(toUInt64(src_merchant), toUInt64(2305843009213693952)) AS m0,
        bitXor(m0, bitShiftRight(m0, 30)) * toUInt64(13787848793156543929) AS m1,
        bitXor(m1, bitShiftRight(m1, 27)) * toUInt64(10723151780598845931) AS m2
    FROM (
        SELECT transaction_id AS src_id, user_id AS src_user, merchant_id AS src_merchant,
               amount AS src_amount, status AS src_status, transaction_time AS src_time,
               updated_at AS src_updated
        FROM {mysql}
    )
)
