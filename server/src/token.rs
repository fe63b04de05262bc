//! Signed join tokens: short, single-use permissions to join, checked before the WebSocket
//! upgrade completes. On when `join_token_public_key` is set.
//!
//! A game's backend (or an operator with `tickwire-server token mint`) signs a token with an
//! Ed25519 private key; game servers hold only the public key, so a server that is compromised
//! or scaled out cannot mint tokens. Ed25519 through `ring` (already in the tree for TLS): no
//! new crypto crate, 64-byte signatures, and verification that does not need a shared secret.
//! No JWT: its JSON header and base64 segments are overhead a game token does not need.
//!
//! The token is the URL-safe base64 (no padding) of:
//!
//! ```text
//! u8      version (1)
//! u64 LE  expiry, Unix seconds
//! [16]    nonce (random)
//! u8 len, bytes   player id (1 to 64 bytes of UTF-8)
//! u8      scope kind: 0 = any room of a game, 1 = one room of a game
//! u8 len, bytes   the game's name (1 to 64 bytes)
//! u8 len, bytes   kind 1 only: the room's id (1 to 64 bytes)
//! [64]    Ed25519 signature of every byte above
//! ```
//!
//! A client sends it as the query parameter `token` of the WebSocket URL, or (browsers cannot
//! set headers) as the subprotocol `tickwire.token.<token>` offered beside `tickwire.v1`.
//! Each token is accepted once: its nonce is remembered until it expires, and an expiry more
//! than `join_token_max_ttl_s` ahead is refused, which bounds that memory. The signature,
//! expiry, nonce and game are checked before the upgrade; a token for one room admits only a
//! hello that joins that room by id (otherwise the session is closed with 4009).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use thiserror::Error;

/// The version byte this server reads and writes.
pub const TOKEN_VERSION: u8 = 1;
/// The prefix of the subprotocol that carries a token.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "tickwire.token.";
/// Longest player id or game name in a token, bytes.
pub const MAX_TOKEN_NAME_BYTES: usize = 64;
/// Longest token accepted, in base64 characters (the largest a valid token can be).
pub const MAX_TOKEN_CHARS: usize =
    (1 + 8 + 16 + 3 * (1 + MAX_TOKEN_NAME_BYTES) + 1 + 64) * 4 / 3 + 4;

const NONCE_BYTES: usize = 16;
const SIGNATURE_BYTES: usize = 64;
const SCOPE_GAME: u8 = 0;
const SCOPE_ROOM: u8 = 1;

/// What a token grants: who joins, where, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The player's id, as the game's backend knows it.
    pub player: String,
    /// The game it may join.
    pub game: String,
    /// The one room of the game it may join, if it is scoped to one.
    pub room: Option<String>,
    /// Expiry, Unix seconds.
    pub expires: u64,
    /// Random bytes that make the token single-use.
    pub nonce: [u8; NONCE_BYTES],
}

/// Why a token was refused, each with the HTTP status the handshake answers.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Tokens are required and the request carried none.
    #[error(
        "a join token is required (query parameter `token` or subprotocol `tickwire.token.<token>`)"
    )]
    Missing,
    /// Not base64, cut short, an unknown version or scope, or a name out of bounds.
    #[error("malformed join token")]
    Malformed,
    /// The signature does not verify with the configured public key.
    #[error("join token signature does not verify")]
    BadSignature,
    /// Its expiry has passed.
    #[error("join token expired")]
    Expired,
    /// Its expiry is further ahead than the server accepts.
    #[error("join token expiry is more than {max_ttl_s} s ahead")]
    TooLong {
        /// The server's limit, seconds.
        max_ttl_s: u64,
    },
    /// A token is accepted once.
    #[error("join token already used")]
    Reused,
    /// Valid, but for another game.
    #[error("join token is for game {token:?}, this server runs {server:?}")]
    WrongGame {
        /// The token's game.
        token: String,
        /// The server's game.
        server: String,
    },
    /// The memory of used tokens is full: try again shortly.
    #[error("too many join tokens in use; try again shortly")]
    Busy,
}

impl TokenError {
    /// The HTTP status for this refusal.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            TokenError::Malformed => 400,
            TokenError::Missing
            | TokenError::BadSignature
            | TokenError::Expired
            | TokenError::TooLong { .. }
            | TokenError::Reused => 401,
            TokenError::WrongGame { .. } => 403,
            TokenError::Busy => 503,
        }
    }
}

/// Why a key could not be read or made.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The text is not base64 of the expected bytes.
    #[error("not a base64 {what}")]
    Encoding {
        /// What was expected.
        what: &'static str,
    },
    /// `ring` refused the key.
    #[error("key rejected: {0}")]
    Rejected(String),
}

/// Signs tokens with an Ed25519 private key.
pub struct TokenSigner {
    key: Ed25519KeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A new private key, as the text of a key file (base64 of its PKCS#8 document).
    ///
    /// # Errors
    /// If the system's random source fails.
    pub fn generate() -> Result<String, KeyError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(doc.as_ref()))
    }

    /// The signer of a key file's text (see [`TokenSigner::generate`]).
    ///
    /// # Errors
    /// If the text is not a PKCS#8 Ed25519 key in base64.
    pub fn from_key_text(text: &str) -> Result<TokenSigner, KeyError> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::Encoding {
                what: "PKCS#8 private key",
            })?;
        let key =
            Ed25519KeyPair::from_pkcs8(&der).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(TokenSigner {
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The public key servers verify with: the value of `join_token_public_key`.
    #[must_use]
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.public_key().as_ref())
    }

    /// A token for `player` to join `game` until `expires` (Unix seconds), with a fresh nonce.
    ///
    /// # Errors
    /// If a name is empty or longer than [`MAX_TOKEN_NAME_BYTES`], or the random source fails.
    pub fn mint(&self, player: &str, game: &str, expires: u64) -> Result<String, TokenError> {
        self.mint_scoped(player, game, None, expires)
    }

    /// A token for `player` to join `game`, or only its room `room` if given, until `expires`
    /// (Unix seconds), with a fresh nonce.
    ///
    /// # Errors
    /// If a name is empty or longer than [`MAX_TOKEN_NAME_BYTES`], or the random source fails.
    pub fn mint_scoped(
        &self,
        player: &str,
        game: &str,
        room: Option<&str>,
        expires: u64,
    ) -> Result<String, TokenError> {
        let mut nonce = [0u8; NONCE_BYTES];
        self.rng.fill(&mut nonce).map_err(|_| TokenError::Busy)?;
        let claims = Claims {
            player: player.to_owned(),
            game: game.to_owned(),
            room: room.map(str::to_owned),
            expires,
            nonce,
        };
        let mut bytes = payload(&claims)?;
        bytes.extend_from_slice(self.key.sign(&bytes).as_ref());
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }
}

/// The signed part of a token.
fn payload(c: &Claims) -> Result<Vec<u8>, TokenError> {
    let name_ok = |s: &str| (1..=MAX_TOKEN_NAME_BYTES).contains(&s.len());
    if !name_ok(&c.player) || !name_ok(&c.game) || !c.room.as_deref().is_none_or(name_ok) {
        return Err(TokenError::Malformed);
    }
    let mut out = Vec::with_capacity(1 + 8 + NONCE_BYTES + 3 + c.player.len() + c.game.len());
    out.push(TOKEN_VERSION);
    out.extend_from_slice(&c.expires.to_le_bytes());
    out.extend_from_slice(&c.nonce);
    out.push(c.player.len() as u8);
    out.extend_from_slice(c.player.as_bytes());
    out.push(if c.room.is_some() {
        SCOPE_ROOM
    } else {
        SCOPE_GAME
    });
    out.push(c.game.len() as u8);
    out.extend_from_slice(c.game.as_bytes());
    if let Some(room) = &c.room {
        out.push(room.len() as u8);
        out.extend_from_slice(room.as_bytes());
    }
    Ok(out)
}

/// Reads the claims of a token's bytes, checking only their shape; returns them and the length
/// of the signed part.
fn parse(bytes: &[u8]) -> Result<(Claims, usize), TokenError> {
    let mut r = bytes;
    let mut take = |n: usize| -> Result<&[u8], TokenError> {
        let (head, rest) = r.split_at_checked(n).ok_or(TokenError::Malformed)?;
        r = rest;
        Ok(head)
    };
    if take(1)? != [TOKEN_VERSION] {
        return Err(TokenError::Malformed);
    }
    let expires = u64::from_le_bytes(take(8)?.try_into().map_err(|_| TokenError::Malformed)?);
    let nonce: [u8; NONCE_BYTES] = take(NONCE_BYTES)?
        .try_into()
        .map_err(|_| TokenError::Malformed)?;
    let player_len = usize::from(take(1)?[0]);
    let player = take(player_len)?.to_vec();
    let kind = take(1)?[0];
    if kind != SCOPE_GAME && kind != SCOPE_ROOM {
        return Err(TokenError::Malformed);
    }
    let game_len = usize::from(take(1)?[0]);
    let game = take(game_len)?.to_vec();
    let room = if kind == SCOPE_ROOM {
        let room_len = usize::from(take(1)?[0]);
        Some(take(room_len)?.to_vec())
    } else {
        None
    };
    let signed = bytes.len() - r.len();
    if r.len() != SIGNATURE_BYTES {
        return Err(TokenError::Malformed);
    }
    let text = |b: Vec<u8>| {
        String::from_utf8(b)
            .ok()
            .filter(|s| (1..=MAX_TOKEN_NAME_BYTES).contains(&s.len()))
            .ok_or(TokenError::Malformed)
    };
    Ok((
        Claims {
            player: text(player)?,
            game: text(game)?,
            room: room.map(text).transpose()?,
            expires,
            nonce,
        },
        signed,
    ))
}

/// Checks tokens against a public key and remembers the ones used.
#[derive(Debug)]
pub struct TokenVerifier {
    public_key: Vec<u8>,
    max_ttl_s: u64,
    used: Mutex<UsedNonces>,
}

/// Nonces of accepted tokens that have not expired, with a cap.
#[derive(Debug)]
struct UsedNonces {
    nonces: HashSet<[u8; NONCE_BYTES]>,
    by_expiry: BinaryHeap<Reverse<(u64, [u8; NONCE_BYTES])>>,
    capacity: usize,
}

impl TokenVerifier {
    /// A verifier for `public_key` (the base64 of [`TokenSigner::public_key`]) that accepts
    /// expiries up to `max_ttl_s` ahead and remembers at most `capacity` unexpired tokens.
    ///
    /// # Errors
    /// If the key is not 32 bytes of base64.
    pub fn new(
        public_key: &str,
        max_ttl_s: u64,
        capacity: usize,
    ) -> Result<TokenVerifier, KeyError> {
        let public_key = URL_SAFE_NO_PAD
            .decode(public_key.trim())
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or(KeyError::Encoding {
                what: "32-byte Ed25519 public key (URL-safe, no padding)",
            })?;
        Ok(TokenVerifier {
            public_key,
            max_ttl_s,
            used: Mutex::new(UsedNonces {
                nonces: HashSet::new(),
                by_expiry: BinaryHeap::new(),
                capacity: capacity.max(1),
            }),
        })
    }

    /// Checks a token for joining `game` at time `now` (Unix seconds) and, if it is good,
    /// uses it up.
    ///
    /// # Errors
    /// Why it was refused; [`TokenError::status`] gives the HTTP status.
    pub fn check(&self, token: &str, game: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        let (claims, signed) = parse(&bytes)?;
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(&bytes[..signed], &bytes[signed..])
            .map_err(|_| TokenError::BadSignature)?;
        if claims.expires <= now {
            return Err(TokenError::Expired);
        }
        if claims.expires - now > self.max_ttl_s {
            return Err(TokenError::TooLong {
                max_ttl_s: self.max_ttl_s,
            });
        }
        if claims.game != game {
            return Err(TokenError::WrongGame {
                token: claims.game,
                server: game.to_owned(),
            });
        }
        let mut used = self.used.lock();
        while let Some(Reverse((expires, nonce))) = used.by_expiry.peek().copied() {
            if expires > now {
                break;
            }
            used.by_expiry.pop();
            used.nonces.remove(&nonce);
        }
        if used.nonces.contains(&claims.nonce) {
            return Err(TokenError::Reused);
        }
        if used.nonces.len() >= used.capacity {
            return Err(TokenError::Busy);
        }
        used.nonces.insert(claims.nonce);
        used.by_expiry.push(Reverse((claims.expires, claims.nonce)));
        Ok(claims)
    }
}

/// Seconds since the Unix epoch, from the system clock.
#[must_use]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn signer() -> TokenSigner {
        TokenSigner::from_key_text(&TokenSigner::generate().expect("key")).expect("reads back")
    }

    fn verifier(s: &TokenSigner) -> TokenVerifier {
        TokenVerifier::new(&s.public_key(), 300, 1000).expect("public key")
    }

    #[test]
    fn a_good_token_is_accepted_once() {
        let s = signer();
        let v = verifier(&s);
        let t = s.mint("player-7", "some-game", NOW + 60).expect("mints");
        assert!(t.len() <= MAX_TOKEN_CHARS);
        let claims = v.check(&t, "some-game", NOW).expect("accepted");
        assert_eq!(claims.player, "player-7");
        assert_eq!(claims.game, "some-game");
        assert_eq!(claims.room, None);
        assert_eq!(claims.expires, NOW + 60);
        assert_eq!(v.check(&t, "some-game", NOW + 1), Err(TokenError::Reused));
        // A second token for the same player is a different token.
        let t2 = s.mint("player-7", "some-game", NOW + 60).expect("mints");
        assert_ne!(t, t2);
        assert!(v.check(&t2, "some-game", NOW).is_ok());
    }

    #[test]
    fn every_refusal_has_its_reason_and_status() {
        let s = signer();
        let v = verifier(&s);
        let expired = s.mint("p", "some-game", NOW - 1).expect("mints");
        assert_eq!(
            v.check(&expired, "some-game", NOW),
            Err(TokenError::Expired)
        );
        let too_long = s.mint("p", "some-game", NOW + 301).expect("mints");
        assert_eq!(
            v.check(&too_long, "some-game", NOW),
            Err(TokenError::TooLong { max_ttl_s: 300 })
        );
        let other = signer().mint("p", "some-game", NOW + 60).expect("mints");
        assert_eq!(
            v.check(&other, "some-game", NOW),
            Err(TokenError::BadSignature)
        );
        let wrong_game = s.mint("p", "other-game", NOW + 60).expect("mints");
        let e = v.check(&wrong_game, "some-game", NOW).expect_err("refused");
        assert!(matches!(e, TokenError::WrongGame { .. }));
        assert_eq!(e.status(), 403);
        // Malformed: not base64, cut, a flipped version, trailing bytes, too long.
        let good = s.mint("p", "some-game", NOW + 60).expect("mints");
        let bytes = URL_SAFE_NO_PAD.decode(&good).expect("base64");
        for bad in [
            "not base64!".to_owned(),
            URL_SAFE_NO_PAD.encode(&bytes[..40]),
            URL_SAFE_NO_PAD.encode([&[2u8][..], &bytes[1..]].concat()),
            URL_SAFE_NO_PAD.encode([&bytes[..], &[0u8][..]].concat()),
            "A".repeat(MAX_TOKEN_CHARS + 1),
            String::new(),
        ] {
            assert_eq!(
                v.check(&bad, "some-game", NOW),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        // A changed byte in the signed part: the signature no longer verifies.
        let mut forged = bytes.clone();
        forged[1] ^= 1; // the expiry
        assert_eq!(
            v.check(&URL_SAFE_NO_PAD.encode(&forged), "some-game", NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(TokenError::Missing.status(), 401);
        assert_eq!(TokenError::Malformed.status(), 400);
        assert_eq!(TokenError::Busy.status(), 503);
        // Names out of bounds are not minted.
        assert_eq!(
            s.mint("", "some-game", NOW + 60),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            s.mint(&"x".repeat(65), "some-game", NOW + 60),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn used_tokens_are_forgotten_when_they_expire_and_the_memory_is_capped() {
        let s = signer();
        let v = TokenVerifier::new(&s.public_key(), 300, 2).expect("public key");
        let a = s.mint("a", "some-game", NOW + 10).expect("mints");
        let b = s.mint("b", "some-game", NOW + 20).expect("mints");
        let c = s.mint("c", "some-game", NOW + 30).expect("mints");
        assert!(v.check(&a, "some-game", NOW).is_ok());
        assert!(v.check(&b, "some-game", NOW).is_ok());
        assert_eq!(v.check(&c, "some-game", NOW), Err(TokenError::Busy));
        // Once `a` expired its slot is free; `a` itself stays refused (expired).
        assert!(v.check(&c, "some-game", NOW + 10).is_ok());
        assert_eq!(v.check(&a, "some-game", NOW + 10), Err(TokenError::Expired));
        assert_eq!(v.check(&b, "some-game", NOW + 11), Err(TokenError::Reused));
    }

    #[test]
    fn keys_are_checked() {
        assert!(TokenSigner::from_key_text("nonsense").is_err());
        assert!(TokenVerifier::new("short", 300, 10).is_err());
        let s = signer();
        assert_eq!(s.public_key().len(), 43);
    }

    #[test]
    fn a_room_token_carries_its_room() {
        let s = signer();
        let v = verifier(&s);
        let long = "r".repeat(MAX_TOKEN_NAME_BYTES);
        let t = s
            .mint_scoped(&"p".repeat(64), &"g".repeat(64), Some(&long), NOW + 60)
            .expect("mints");
        assert!(t.len() <= MAX_TOKEN_CHARS, "{} chars", t.len());
        let claims = v.check(&t, &"g".repeat(64), NOW).expect("accepted");
        assert_eq!(claims.room.as_deref(), Some(long.as_str()));
        assert_eq!(
            s.mint_scoped("p", "g", Some(""), NOW + 60),
            Err(TokenError::Malformed)
        );
        // The room is signed: cutting it off breaks the token.
        let short = s
            .mint_scoped("p", "g", Some("abc"), NOW + 60)
            .expect("mints");
        let mut bytes = URL_SAFE_NO_PAD.decode(&short).expect("base64");
        let at = bytes.len() - 64 - 4;
        bytes[at] = 2;
        assert!(v.check(&URL_SAFE_NO_PAD.encode(&bytes), "g", NOW).is_err());
    }
}
