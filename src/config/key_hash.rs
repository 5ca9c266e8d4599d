//! The user-key hash: SipHash-2-4 (Aumasson & Bernstein) keyed by `[affinity] seed`, and the
//! bucket it picks. Unlike `std`'s `DefaultHasher` its output is fixed by its specification, so
//! every replica and every release assigns a key to the same bucket. Built with the config (the
//! seed is validated here); the data path's bucket table uses it.

/// Buckets in a table: one per 0.01 % of traffic.
pub const BUCKETS: usize = 10_000;

/// SipHash-2-4 with a 128-bit key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHasher {
    k0: u64,
    k1: u64,
}

impl KeyHasher {
    /// The hasher for `[affinity] seed`: its key is SipHash-2-4 of the seed under the zero key
    /// (low 64 bits) and under the key `(1, 0)` (high 64 bits).
    pub fn from_seed(seed: &str) -> KeyHasher {
        let zero = KeyHasher { k0: 0, k1: 0 };
        let one = KeyHasher { k0: 1, k1: 0 };
        KeyHasher {
            k0: zero.hash(seed.as_bytes()),
            k1: one.hash(seed.as_bytes()),
        }
    }

    /// SipHash-2-4 of `data`.
    pub fn hash(&self, data: &[u8]) -> u64 {
        let mut v = [
            self.k0 ^ 0x736f_6d65_7073_6575,
            self.k1 ^ 0x646f_7261_6e64_6f6d,
            self.k0 ^ 0x6c79_6765_6e65_7261,
            self.k1 ^ 0x7465_6462_7974_6573,
        ];
        let mut words = data.chunks_exact(8);
        for word in &mut words {
            let m = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            v[3] ^= m;
            sip_round(&mut v);
            sip_round(&mut v);
            v[0] ^= m;
        }
        let mut last = [0u8; 8];
        let tail = words.remainder();
        last[..tail.len()].copy_from_slice(tail);
        last[7] = data.len() as u8;
        let m = u64::from_le_bytes(last);
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
        v[2] ^= 0xff;
        for _ in 0..4 {
            sip_round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    /// The bucket of a user key.
    pub fn bucket(&self, key: &[u8]) -> u16 {
        (self.hash(key) % BUCKETS as u64) as u16
    }
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn siphash_matches_the_reference_and_std() {
        // The SipHash paper's test key 00..0f and empty input.
        let k = KeyHasher {
            k0: u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]),
            k1: u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]),
        };
        assert_eq!(k.hash(b""), 0x726f_db47_dd0e_0e31);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for len in 0..64 {
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            #[allow(deprecated)]
            let mut std = std::hash::SipHasher::new_with_keys(k.k0, k.k1);
            std::hash::Hasher::write(&mut std, &data);
            assert_eq!(
                k.hash(&data),
                std::hash::Hasher::finish(&std),
                "length {len}"
            );
        }
    }
}
