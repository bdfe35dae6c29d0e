-- Per stream and label: precision and recall of the model's predictions against the labels people
-- reviewed, at the stream's threshold and at a probability cut-off (0.5 here: change it in `cutoff`).
-- Ground truth: the comments with reviewed labels (dataset_comments.has_reviewed_labels); on those, a
-- label a person assigned is a positive, any other label a negative.
WITH cutoff AS (
  SELECT 0.5 AS probability
),
reviewed AS (
  SELECT DISTINCT project, dataset, uid, label
  FROM dataset_comment_labels
  WHERE kind = 'reviewed'
),
predicted AS (
  SELECT l.project, l.dataset, l.uid, l.label, MAX(l.probability) AS probability
  FROM dataset_comment_labels AS l
  JOIN dataset_comments AS c ON c.project = l.project AND c.dataset = l.dataset AND c.uid = l.uid
  WHERE l.kind = 'predicted' AND c.has_reviewed_labels
  GROUP BY l.project, l.dataset, l.uid, l.label
),
pairs AS (
  SELECT COALESCE(r.project, p.project) AS project,
         COALESCE(r.dataset, p.dataset) AS dataset,
         COALESCE(r.label, p.label) AS label,
         CASE WHEN r.uid IS NULL THEN 0 ELSE 1 END AS assigned,
         COALESCE(p.probability, 0) AS probability
  FROM reviewed AS r
  FULL OUTER JOIN predicted AS p
    ON p.project = r.project AND p.dataset = r.dataset AND p.uid = r.uid AND p.label = r.label
),
counts AS (
  SELECT t.project, t.dataset, t.stream, t.label, t.threshold,
         SUM(pairs.assigned) AS reviewed,
         SUM(CASE WHEN pairs.probability >= t.threshold THEN pairs.assigned ELSE 0 END) AS tp_at_threshold,
         SUM(CASE WHEN pairs.probability >= t.threshold THEN 1 ELSE 0 END) AS predicted_at_threshold,
         SUM(CASE WHEN pairs.probability >= cutoff.probability THEN pairs.assigned ELSE 0 END) AS tp_at_cutoff,
         SUM(CASE WHEN pairs.probability >= cutoff.probability THEN 1 ELSE 0 END) AS predicted_at_cutoff
  FROM stream_label_thresholds AS t
  JOIN pairs ON pairs.project = t.project AND pairs.dataset = t.dataset AND pairs.label = t.label
  CROSS JOIN cutoff
  GROUP BY t.project, t.dataset, t.stream, t.label, t.threshold
)
SELECT project, dataset, stream, label, threshold, reviewed,
       predicted_at_threshold,
       ROUND(CAST(tp_at_threshold AS NUMERIC) / NULLIF(predicted_at_threshold, 0), 3) AS precision_at_threshold,
       ROUND(CAST(tp_at_threshold AS NUMERIC) / NULLIF(reviewed, 0), 3) AS recall_at_threshold,
       ROUND(CAST(tp_at_cutoff AS NUMERIC) / NULLIF(predicted_at_cutoff, 0), 3) AS precision_at_cutoff,
       ROUND(CAST(tp_at_cutoff AS NUMERIC) / NULLIF(reviewed, 0), 3) AS recall_at_cutoff
FROM counts
ORDER BY project, dataset, stream, label
