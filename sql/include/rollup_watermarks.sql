CREATE TABLE rollup_watermarks (
  level     text PRIMARY KEY CHECK (level IN ('hour', 'day', 'month')),
  watermark timestamptz NOT NULL
);
INSERT INTO rollup_watermarks VALUES ('hour', '-infinity'), ('day', '-infinity'), ('month', '-infinity');
