-- The reviewer directory as versioned files (gates/directory.py): every version loaded, with its
-- validated document. The directory in force is the latest loaded (highest seq). Loading also
-- refreshes world_people, world_reviewer_groups and world_group_members from it, so the inbox and
-- every reader of those tables agree with the file.

CREATE TABLE directory_versions (
    seq       bigserial PRIMARY KEY,
    version   text NOT NULL UNIQUE,
    sha256    text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    document  jsonb NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    loaded_by text NOT NULL
);

-- A group may serve several gates, or none yet; `gate` is the one it serves when there is exactly one.
ALTER TABLE world_reviewer_groups ALTER COLUMN gate DROP NOT NULL;
