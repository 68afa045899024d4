-- The incremental batch: 3 new transactions after the seed. The demo and the tests apply it
-- between the full and the incremental run; the incremental run loads these 3 and only these.
INSERT IGNORE INTO transactions (transaction_id, user_id, merchant_id, amount, status, transaction_time) VALUES
    ('TX1009', 1, 2,  49999.99, 'SUCCESS', '2025-01-12 10:00:00'),
    ('TX1010', 3, 3, 100000.00, 'SUCCESS', '2025-01-12 18:20:00'),
    ('TX1011', 3, 1,  99999.99, 'PENDING', '2025-01-13 07:05:00');
