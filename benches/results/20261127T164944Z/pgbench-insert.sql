INSERT INTO bench_rows (id, payload, created_at) VALUES (gen_random_uuid()::text, 'row', now()::text);
