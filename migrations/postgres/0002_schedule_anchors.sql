-- When the scheduler first saw each workflow: a new workflow starts from then and does not
-- catch up on fires from before it existed. (Twin of migrations/sqlite/0002.)
CREATE TABLE schedule_anchors (
    workflow TEXT   PRIMARY KEY,
    since    BIGINT NOT NULL
);
