-- Qualitative feedback (spec 4.6): the themes and sentiment of comments.
-- `feedback_taxonomy` (theme, keyword) is registered by the engine from
-- [feedback.themes] or the built-in taxonomy; comment_themes() and
-- comment_sentiment() are Rust UDFs (src/feedback).

-- One row per comment: a survey submission's comment, non-empty after
-- trimming. A csi submission repeating its comment on every item row is one
-- comment; its score is kept only when the comment has a single row.
CREATE OR REPLACE VIEW feedback_comments AS
WITH comments AS (
    SELECT s.response_id, s.customer_id, s.customer_key, s.survey,
           regexp_replace(s.comment, '^\s+|\s+$', '', 'g') AS comment,
           MIN(s.responded_at) AS responded_at,
           CASE WHEN COUNT(*) = 1 THEN MAX(s.score) END AS score
    FROM surveys s
    WHERE regexp_like(s.comment, '\S')
    GROUP BY s.response_id, s.customer_id, s.customer_key, s.survey,
             regexp_replace(s.comment, '^\s+|\s+$', '', 'g')
)
SELECT c.response_id, c.customer_id,
       CAST(date_trunc('month', c.responded_at) AS DATE) AS month,
       c.survey, c.score,
       comment_sentiment(c.comment) AS sentiment,
       comment_themes(c.comment) AS themes,
       COALESCE(cs.segment, 'unknown') AS segment,
       c.responded_at, c.comment
FROM comments c
LEFT JOIN customer_segments cs ON cs.customer_key = c.customer_key;

-- Every reported month and theme, mentions 0 where no comment matches.
CREATE OR REPLACE VIEW feedback_themes AS
WITH monthly AS (
    SELECT month, COUNT(*) AS comments
    FROM feedback_comments
    GROUP BY month
), mentioned AS (
    SELECT month, survey, score, sentiment, unnest(themes) AS theme
    FROM feedback_comments
), by_theme AS (
    SELECT month, theme,
           COUNT(*) AS mentions,
           -- summed in millionths: exact, so reruns give identical bits
           CAST(SUM(CAST(round(sentiment * 1000000) AS BIGINT)) AS DOUBLE)
               / COUNT(*) / 1000000.0 AS avg_sentiment,
           AVG(CASE WHEN survey = 'nps' THEN score END) AS avg_nps_score
    FROM mentioned
    GROUP BY month, theme
), themes AS (
    SELECT DISTINCT theme FROM feedback_taxonomy
)
SELECT m.month, t.theme,
       COALESCE(c.comments, 0) AS comments,
       COALESCE(b.mentions, 0) AS mentions,
       CASE WHEN c.comments > 0 THEN 100.0 * COALESCE(b.mentions, 0) / c.comments END AS share,
       b.avg_sentiment,
       b.avg_nps_score
FROM kpi_months m
CROSS JOIN themes t
LEFT JOIN monthly c ON c.month = m.month
LEFT JOIN by_theme b ON b.month = m.month AND b.theme = t.theme;
