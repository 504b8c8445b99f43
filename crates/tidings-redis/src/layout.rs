//! Where a store's keys live. Two planes, each script touching one of them:
//!
//! - the **session keys** (channels, aliases, users, who follows which topic, expiry) under one
//!   base, the prefix;
//! - the **topic keys** (records, heads, the idle index) and the announcement channel under the
//!   base of the topic's group.
//!
//! On one server there is one group, whose base is the prefix too, so both planes share it. On
//! a Redis Cluster every base is a hash tag: the session keys sit in one slot, and the topics
//! are spread over [`CLUSTER_GROUPS`] groups whose slots are evenly spaced over the 16,384, so
//! that a cluster made by `redis-cli --cluster create` gives each shard its share of them.
//! Appends, reads and their announcements, the bulk of the traffic, then spread over the
//! shards; session operations stay on the shard of the session slot.

/// Topic groups on a Redis Cluster: enough for 64 shards, few enough that a sweep over them
/// all stays cheap.
pub(crate) const CLUSTER_GROUPS: usize = 64;

/// How many hash slots a Redis Cluster has.
const SLOTS: u16 = 16_384;

/// The key bases of one service.
#[derive(Debug)]
pub(crate) struct Layout {
    sessions: String,
    groups: Vec<String>,
}

impl Layout {
    /// One server: every key under `prefix`, one group.
    pub(crate) fn server(prefix: &str) -> Layout {
        Layout {
            sessions: prefix.to_owned(),
            groups: vec![prefix.to_owned()],
        }
    }

    /// A cluster: the session keys under the hash tag `{<prefix>}`, and `groups` topic groups
    /// under `{<prefix><n>}`, each `n` picked so that group `g`'s slot falls in the `g`-th of
    /// `groups` equal ranges of slots. `prefix` must not hold braces.
    pub(crate) fn cluster(prefix: &str, groups: usize) -> Layout {
        assert!((1..=usize::from(SLOTS)).contains(&groups));
        let mut tags: Vec<Option<String>> = vec![None; groups];
        let mut missing = groups;
        for n in 0u64.. {
            let tag = format!("{prefix}{n}");
            let group = usize::from(slot(&tag)) * groups / usize::from(SLOTS);
            if tags[group].is_none() {
                tags[group] = Some(format!("{{{tag}}}"));
                missing -= 1;
                if missing == 0 {
                    break;
                }
            }
        }
        Layout {
            sessions: format!("{{{prefix}}}"),
            groups: tags.into_iter().flatten().collect(),
        }
    }

    /// The base of the session keys.
    pub(crate) fn sessions(&self) -> &str {
        &self.sessions
    }

    /// How many topic groups there are.
    pub(crate) fn groups(&self) -> usize {
        self.groups.len()
    }

    /// The base of group `group`'s keys.
    pub(crate) fn group(&self, group: usize) -> &str {
        &self.groups[group]
    }

    /// The hash slot of group `group`'s keys and announcement channel.
    pub(crate) fn slot_of_group(&self, group: usize) -> u16 {
        let base = &self.groups[group];
        slot(base.trim_start_matches('{').trim_end_matches('}'))
    }

    /// The group of `topic`.
    pub(crate) fn group_of(&self, topic: &str) -> usize {
        usize::from(hash(topic.as_bytes())) % self.groups.len()
    }

    /// The base of `topic`'s keys.
    pub(crate) fn topic(&self, topic: &str) -> &str {
        self.group(self.group_of(topic))
    }

    /// The channel a group's appends and drops are announced on (`P heads` in
    /// `lua/common.lua`).
    pub(crate) fn heads(&self, group: usize) -> String {
        format!("{}heads", self.groups[group])
    }

    /// The group whose announcement channel is `channel`, if it is one of ours.
    pub(crate) fn group_of_heads(&self, channel: &[u8]) -> Option<usize> {
        (0..self.groups.len()).find(|&g| self.heads(g).as_bytes() == channel)
    }
}

/// The CRC16 (XMODEM) Redis Cluster hashes keys with.
fn hash(bytes: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(bytes)
}

/// The hash slot of a key whose hash tag is `tag`.
fn slot(tag: &str) -> u16 {
    hash(tag.as_bytes()) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_one_redis_cluster_uses() {
        // Redis's own example: CLUSTER KEYSLOT of "123456789" is 12739 (0x31C3).
        assert_eq!(slot("123456789"), 12_739);
        assert_eq!(slot("foo"), 12_182);
    }

    #[test]
    fn cluster_groups_are_evenly_spaced_and_distinct() {
        let layout = Layout::cluster("tidings:", CLUSTER_GROUPS);
        assert_eq!(layout.groups(), CLUSTER_GROUPS);
        for g in 0..CLUSTER_GROUPS {
            let base = layout.group(g);
            let tag = base.trim_start_matches('{').trim_end_matches('}');
            assert_eq!(
                usize::from(slot(tag)) * CLUSTER_GROUPS / 16_384,
                g,
                "{base}"
            );
            assert_eq!(layout.slot_of_group(g), slot(tag));
            assert_eq!(layout.group_of_heads(layout.heads(g).as_bytes()), Some(g));
        }
        assert_eq!(layout.sessions(), "{tidings:}");
    }

    #[test]
    fn one_server_has_one_group_under_the_prefix() {
        let layout = Layout::server("p:");
        assert_eq!((layout.sessions(), layout.topic("news")), ("p:", "p:"));
        assert_eq!(layout.heads(0), "p:heads");
    }

    #[test]
    fn topics_spread_over_the_groups() {
        let layout = Layout::cluster("t:", 64);
        let mut counts = [0usize; 64];
        for n in 0..6_400 {
            counts[layout.group_of(&format!("room-{n}"))] += 1;
        }
        assert!(
            counts.iter().all(|&c| (50..=150).contains(&c)),
            "{counts:?}"
        );
    }
}
