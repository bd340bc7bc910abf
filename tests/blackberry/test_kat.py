"""Known-answer tests for every primitive the BlackBerry constructions use (harness/blackberry/ciphers.py).

Sources: NIST SP 800-38A (AES-CBC F.2.5, AES-CTR F.5.5), NIST SP 800-67 Rev. 1 (Triple DES example)
and SP 800-20 (TMOVS variable-plaintext table, two-key form), RFC 3394 (4.1, 4.6), RFC 7748 (6.1),
RFC 5869 (A.1), RFC 4231 (4.3), SEC 2 / FIPS 186-4 (the P-521 base point, the public key of d = 1).
"""
import pytest

from harness.blackberry import ciphers as c

h = bytes.fromhex
AES256_KEY = h("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
SP800_38A_PLAIN = h("6bc1bee22e409f96e93d7e117393172a" "ae2d8a571e03ac9c9eb76fac45af8e51"
                    "30c81c46a35ce411e5fbc1191a0a52ef" "f69f2445df4f9b17ad2b417be66c3710")


def test_aes256_cbc_sp800_38a_f25():
    ct = c.aes_cbc_encrypt(AES256_KEY, h("000102030405060708090a0b0c0d0e0f"), SP800_38A_PLAIN)
    assert ct[:64] == h("f58c4c04d6e5f1ba779eabfb5f7bfbd6" "9cfc4e967edb808d679f777bc6702c7d"
                        "39f23369a9d9bacfa530e26304231461" "b2eb05e2c39be9fcda6c19078c6a9d1b")
    assert len(ct) == 80  # one block of PKCS#7 padding
    assert c.aes_cbc_decrypt(AES256_KEY, h("000102030405060708090a0b0c0d0e0f"), ct) == SP800_38A_PLAIN


def test_aes256_ctr_sp800_38a_f55():
    ct = c.aes_ctr(AES256_KEY, h("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"), SP800_38A_PLAIN)
    assert ct == h("601ec313775789a5b7a7f504bbf3d228" "f443e3ca4d62b59aca84e990cacaf5c5"
                   "2b0930daa23de94ce87017ba2d84988d" "dfc9c58db67aada613c2dd08457941a6")


def test_tdes_sp800_67_example():
    key = h("0123456789ABCDEF" "23456789ABCDEF01" "456789ABCDEF0123")
    assert c.tdes_ecb(key, b"The qufck brown fox jump") == h("A826FD8CE53B855F" "CCE21C8112256FE6" "68D5C05DD9B6B900")
    assert c.tdes_ecb(key, h("A826FD8CE53B855F"), encrypt=False) == b"The qufc"


@pytest.mark.parametrize("plain,cipher", [("8000000000000000", "95F8A5E5DD31D900"),
                                          ("4000000000000000", "DD7F121CA5015619")])
def test_two_key_tdes_sp800_20_variable_plaintext(plain, cipher):
    assert c.tdes_ecb(h("01" * 16), h(plain)) == h(cipher)  # two-key form (K1 K2 K1), K1 = K2 = 01..01


def test_two_key_tdes_is_k1_k2_k1():
    k = bytes(range(16))
    data = bytes(range(32))
    assert c.tdes_ecb(k, data) == c.tdes_ecb(k + k[:8], data)
    iv = b"\x07" * 8
    assert c.tdes_cbc_decrypt(k, iv, c.tdes_cbc_encrypt(k, iv, b"PIN scrambling")) == b"PIN scrambling"
    with pytest.raises(c.PaddingError):
        c.tdes_cbc_decrypt(bytes(16), iv, c.tdes_cbc_encrypt(k, iv, b"PIN scrambling" * 3))


def test_rfc3394_key_wrap():
    assert c.key_wrap(h("000102030405060708090A0B0C0D0E0F"), h("00112233445566778899AABBCCDDEEFF")) == \
        h("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")
    kek = h("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
    key = h("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
    wrapped = h("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
    assert c.key_wrap(kek, key) == wrapped
    assert c.key_unwrap(kek, wrapped) == key
    from cryptography.hazmat.primitives.keywrap import InvalidUnwrap
    with pytest.raises(InvalidUnwrap):
        c.key_unwrap(bytes(32), wrapped)


def test_rfc7748_x25519():
    alice = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    assert c.x25519_public(alice) == h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert c.x25519_public(bob) == h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert c.x25519_shared(alice, c.x25519_public(bob)) == shared == c.x25519_shared(bob, c.x25519_public(alice))


def test_rfc5869_hkdf_sha256_case_1():
    okm = c.hkdf_sha256(b"\x0b" * 22, h("000102030405060708090a0b0c"), h("f0f1f2f3f4f5f6f7f8f9"), 42)
    assert okm == h("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


def test_rfc4231_hmac_sha256_case_2():
    assert c.hmac_sha256(b"Jefe", b"what do ya want for nothing?") == \
        h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_p521_public_key_of_one_is_the_base_point():
    gx = h("00c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ff"
           "a8de3348b3c1856a429bf97e7e31c2e5bd66")
    gy = h("011839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad"
           "0761353c7086a272c24088be94769fd16650")
    assert c.p521_public_bytes(c.p521_private(bytes(66))) == b"\x04" + gx + gy  # 0 mod (n-1) + 1 = 1
    assert c.P521_ORDER == int("68647976601306097149819007990813932172694353001433054093944634591855431833976553"
                               "94245057746333217197532963996371363321113864768612440380340372808892707005449")


def test_p521_ecdsa_signatures_are_fixed_size_deterministic_and_verify():
    key = c.p521_private(b"\x42" * 66)
    pub = c.p521_public_bytes(key)
    sig = c.p521_sign(key, b"message")
    assert len(sig) == c.P521_SIGNATURE_BYTES == 132 and len(pub) == c.P521_PUBLIC_BYTES == 133
    assert sig == c.p521_sign(key, b"message")  # RFC 6979: same key, same message, same signature
    assert c.p521_verify(pub, b"message", sig)
    assert not c.p521_verify(pub, b"messagE", sig)
    assert not c.p521_verify(c.p521_public_bytes(c.p521_private(b"\x43" * 66)), b"message", sig)


def test_p521_ecdh_agrees():
    a, b = c.p521_private(b"\x01" * 66), c.p521_private(b"\x02" * 66)
    assert c.p521_shared(a, c.p521_public_bytes(b)) == c.p521_shared(b, c.p521_public_bytes(a))
