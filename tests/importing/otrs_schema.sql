-- The tables `ticketbot import-otrs` reads, as the published OTRS 6 / Znuny 6.x schema
-- creates them on PostgreSQL (scripts/database/otrs-schema.postgresql.sql; column names,
-- types and NULLs as there, indexes left out), and the rows of the initial insert
-- (scripts/database/otrs-initial_insert.postgresql.sql) that give names to ids.
-- Note: on PostgreSQL OTRS stores binary content (attachments, raw mails) base64-encoded
-- in TEXT columns (its DB driver has DirectBlob off).
SET standard_conforming_strings TO ON;
CREATE TABLE users (
    id serial NOT NULL,
    login VARCHAR (200) NOT NULL,
    pw VARCHAR (128) NOT NULL,
    title VARCHAR (50) NULL,
    first_name VARCHAR (100) NOT NULL,
    last_name VARCHAR (100) NOT NULL,
    valid_id SMALLINT NOT NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    CONSTRAINT users_login UNIQUE (login)
);
CREATE TABLE queue (
    id serial NOT NULL,
    name VARCHAR (200) NOT NULL,
    group_id INTEGER NOT NULL,
    unlock_timeout INTEGER NULL,
    first_response_time INTEGER NULL,
    first_response_notify SMALLINT NULL,
    update_time INTEGER NULL,
    update_notify SMALLINT NULL,
    solution_time INTEGER NULL,
    solution_notify SMALLINT NULL,
    system_address_id SMALLINT NOT NULL,
    calendar_name VARCHAR (100) NULL,
    default_sign_key VARCHAR (100) NULL,
    salutation_id SMALLINT NOT NULL,
    signature_id SMALLINT NOT NULL,
    follow_up_id SMALLINT NOT NULL,
    follow_up_lock SMALLINT NOT NULL,
    comments VARCHAR (250) NULL,
    valid_id SMALLINT NOT NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    CONSTRAINT queue_name UNIQUE (name)
);
CREATE TABLE ticket_priority (
    id serial NOT NULL,
    name VARCHAR (200) NOT NULL,
    valid_id SMALLINT NOT NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    CONSTRAINT ticket_priority_name UNIQUE (name)
);
CREATE TABLE ticket_state (
    id serial NOT NULL,
    name VARCHAR (200) NOT NULL,
    comments VARCHAR (250) NULL,
    type_id SMALLINT NOT NULL,
    valid_id SMALLINT NOT NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    CONSTRAINT ticket_state_name UNIQUE (name)
);
CREATE TABLE ticket_state_type (
    id serial NOT NULL,
    name VARCHAR (200) NOT NULL,
    comments VARCHAR (250) NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    CONSTRAINT ticket_state_type_name UNIQUE (name)
);
CREATE TABLE ticket (
    id bigserial NOT NULL,
    tn VARCHAR (50) NOT NULL,
    title VARCHAR (255) NULL,
    queue_id INTEGER NOT NULL,
    ticket_lock_id SMALLINT NOT NULL,
    type_id SMALLINT NULL,
    service_id INTEGER NULL,
    sla_id INTEGER NULL,
    user_id INTEGER NOT NULL,
    responsible_user_id INTEGER NOT NULL,
    ticket_priority_id SMALLINT NOT NULL,
    ticket_state_id SMALLINT NOT NULL,
    customer_id VARCHAR (150) NULL,
    customer_user_id VARCHAR (250) NULL,
    timeout INTEGER NOT NULL,
    until_time INTEGER NOT NULL,
    escalation_time INTEGER NOT NULL,
    escalation_update_time INTEGER NOT NULL,
    escalation_response_time INTEGER NOT NULL,
    escalation_solution_time INTEGER NOT NULL,
    archive_flag SMALLINT DEFAULT 0 NOT NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    CONSTRAINT ticket_tn UNIQUE (tn)
);
CREATE TABLE ticket_history (
    id bigserial NOT NULL,
    name VARCHAR (200) NOT NULL,
    history_type_id SMALLINT NOT NULL,
    ticket_id BIGINT NOT NULL,
    article_id BIGINT NULL,
    type_id SMALLINT NOT NULL,
    queue_id INTEGER NOT NULL,
    owner_id INTEGER NOT NULL,
    priority_id SMALLINT NOT NULL,
    state_id SMALLINT NOT NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id)
);
CREATE TABLE ticket_history_type (
    id serial NOT NULL,
    name VARCHAR (200) NOT NULL,
    comments VARCHAR (250) NULL,
    valid_id SMALLINT NOT NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    CONSTRAINT ticket_history_type_name UNIQUE (name)
);
CREATE TABLE article_sender_type (
    id serial NOT NULL,
    name VARCHAR (200) NOT NULL,
    comments VARCHAR (250) NULL,
    valid_id SMALLINT NOT NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    CONSTRAINT article_sender_type_name UNIQUE (name)
);
CREATE TABLE communication_channel (
    id bigserial NOT NULL,
    name VARCHAR (200) NOT NULL,
    module VARCHAR (200) NOT NULL,
    package_name VARCHAR (200) NOT NULL,
    channel_data TEXT NOT NULL,
    valid_id SMALLINT NOT NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id),
    CONSTRAINT communication_channel_name UNIQUE (name)
);
CREATE TABLE article (
    id bigserial NOT NULL,
    ticket_id BIGINT NOT NULL,
    article_sender_type_id SMALLINT NOT NULL,
    communication_channel_id BIGINT NOT NULL,
    is_visible_for_customer SMALLINT NOT NULL,
    search_index_needs_rebuild SMALLINT DEFAULT 1 NOT NULL,
    insert_fingerprint VARCHAR (64) NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id)
);
CREATE TABLE article_data_mime (
    id bigserial NOT NULL,
    article_id BIGINT NOT NULL,
    a_from VARCHAR NULL,
    a_reply_to VARCHAR NULL,
    a_to VARCHAR NULL,
    a_cc VARCHAR NULL,
    a_bcc VARCHAR NULL,
    a_subject VARCHAR (3800) NULL,
    a_message_id VARCHAR (3800) NULL,
    a_message_id_md5 VARCHAR (32) NULL,
    a_in_reply_to VARCHAR NULL,
    a_references VARCHAR NULL,
    a_content_type VARCHAR (250) NULL,
    a_body VARCHAR NULL,
    incoming_time INTEGER NOT NULL,
    content_path VARCHAR (250) NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id)
);
CREATE TABLE article_data_mime_plain (
    id bigserial NOT NULL,
    article_id BIGINT NOT NULL,
    body TEXT NOT NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id)
);
CREATE TABLE article_data_mime_attachment (
    id bigserial NOT NULL,
    article_id BIGINT NOT NULL,
    filename VARCHAR (250) NULL,
    content_size VARCHAR (30) NULL,
    content_type VARCHAR (450) NULL,
    content_id VARCHAR (250) NULL,
    content_alternative VARCHAR (50) NULL,
    disposition VARCHAR (15) NULL,
    content TEXT NULL,
    create_time timestamp(0) NOT NULL,
    create_by INTEGER NOT NULL,
    change_time timestamp(0) NOT NULL,
    change_by INTEGER NOT NULL,
    PRIMARY KEY(id)
);

-- initial insert (the rows that name ids)
INSERT INTO users (login, pw, first_name, last_name, valid_id, create_by, create_time, change_by, change_time)
    VALUES ('root@localhost', 'x', 'Admin', 'OTRS', 1, 1, current_timestamp, 1, current_timestamp);
INSERT INTO ticket_priority (name, valid_id, create_by, create_time, change_by, change_time) VALUES
    ('1 very low', 1, 1, current_timestamp, 1, current_timestamp),
    ('2 low', 1, 1, current_timestamp, 1, current_timestamp),
    ('3 normal', 1, 1, current_timestamp, 1, current_timestamp),
    ('4 high', 1, 1, current_timestamp, 1, current_timestamp),
    ('5 very high', 1, 1, current_timestamp, 1, current_timestamp);
INSERT INTO ticket_state_type (name, comments, create_by, create_time, change_by, change_time) VALUES
    ('new', 'All new state types (default: viewable).', 1, current_timestamp, 1, current_timestamp),
    ('open', 'All open state types (default: viewable).', 1, current_timestamp, 1, current_timestamp),
    ('closed', 'All closed state types (default: not viewable).', 1, current_timestamp, 1, current_timestamp),
    ('pending reminder', 'All ''pending reminder'' state types (default: viewable).', 1, current_timestamp, 1, current_timestamp),
    ('pending auto', 'All ''pending auto *'' state types (default: viewable).', 1, current_timestamp, 1, current_timestamp),
    ('removed', 'All ''removed'' state types (default: not viewable).', 1, current_timestamp, 1, current_timestamp),
    ('merged', 'State type for merged tickets (default: not viewable).', 1, current_timestamp, 1, current_timestamp);
INSERT INTO ticket_state (name, comments, type_id, valid_id, create_by, create_time, change_by, change_time) VALUES
    ('new', 'Ticket is new.', 1, 1, 1, current_timestamp, 1, current_timestamp),
    ('closed successful', 'Ticket is closed successful.', 3, 1, 1, current_timestamp, 1, current_timestamp),
    ('closed unsuccessful', 'Ticket is closed unsuccessful.', 3, 1, 1, current_timestamp, 1, current_timestamp),
    ('open', 'Open tickets.', 2, 1, 1, current_timestamp, 1, current_timestamp),
    ('removed', 'Customer removed ticket.', 6, 1, 1, current_timestamp, 1, current_timestamp),
    ('pending reminder', 'Ticket is pending for agent reminder.', 4, 1, 1, current_timestamp, 1, current_timestamp),
    ('pending auto close+', 'Ticket is pending for automatic close.', 5, 1, 1, current_timestamp, 1, current_timestamp),
    ('pending auto close-', 'Ticket is pending for automatic close.', 5, 1, 1, current_timestamp, 1, current_timestamp),
    ('merged', 'State for merged tickets.', 7, 1, 1, current_timestamp, 1, current_timestamp);
INSERT INTO article_sender_type (name, valid_id, create_by, create_time, change_by, change_time) VALUES
    ('agent', 1, 1, current_timestamp, 1, current_timestamp),
    ('system', 1, 1, current_timestamp, 1, current_timestamp),
    ('customer', 1, 1, current_timestamp, 1, current_timestamp);
INSERT INTO communication_channel (name, module, package_name, channel_data, valid_id, create_by, create_time, change_by, change_time) VALUES
    ('Email', 'Kernel::System::CommunicationChannel::Email', 'Framework', '---', 1, 1, current_timestamp, 1, current_timestamp),
    ('Phone', 'Kernel::System::CommunicationChannel::Phone', 'Framework', '---', 1, 1, current_timestamp, 1, current_timestamp),
    ('Internal', 'Kernel::System::CommunicationChannel::Internal', 'Framework', '---', 1, 1, current_timestamp, 1, current_timestamp),
    ('Chat', 'Kernel::System::CommunicationChannel::Chat', 'Framework', '---', 1, 1, current_timestamp, 1, current_timestamp);
INSERT INTO ticket_history_type (name, valid_id, create_by, create_time, change_by, change_time) VALUES
    ('NewTicket', 1, 1, current_timestamp, 1, current_timestamp),
    ('FollowUp', 1, 1, current_timestamp, 1, current_timestamp),
    ('SendAutoReply', 1, 1, current_timestamp, 1, current_timestamp),
    ('Move', 1, 1, current_timestamp, 1, current_timestamp),
    ('AddNote', 1, 1, current_timestamp, 1, current_timestamp),
    ('SendAnswer', 1, 1, current_timestamp, 1, current_timestamp),
    ('StateUpdate', 1, 1, current_timestamp, 1, current_timestamp),
    ('Merged', 1, 1, current_timestamp, 1, current_timestamp);
