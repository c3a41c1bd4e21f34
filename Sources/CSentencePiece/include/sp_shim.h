// A C API over libsentencepiece's C++ SentencePieceProcessor, so Swift modules never need
// C++ interop. Every function taking a processor requires one returned by a successful
// sp_load_*: a processor whose model failed to load is never handed out (calling into one
// crashes libsentencepiece).
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Opaque handle owning a loaded SentencePieceProcessor.
typedef struct sp_processor sp_processor;

/// Piece types, numbered as sentencepiece_model.proto numbers ModelProto.SentencePiece.Type.
typedef enum sp_piece_type {
    SP_PIECE_NORMAL = 1,
    SP_PIECE_UNKNOWN = 2,
    SP_PIECE_CONTROL = 3,
    SP_PIECE_USER_DEFINED = 4,
    SP_PIECE_UNUSED = 5,
    SP_PIECE_BYTE = 6,
} sp_piece_type;

/// Loads a model from serialized ModelProto bytes. On failure returns NULL and stores a
/// malloc'd message in *error (free it with sp_free_string).
sp_processor *sp_load_from_serialized(const void *bytes, size_t length, char **error);

/// Loads a model from a tokenizer.model file. Same error contract as sp_load_from_serialized.
sp_processor *sp_load_from_file(const char *path, char **error);

/// Frees a processor (NULL is ignored).
void sp_free(sp_processor *processor);

/// Frees a string returned through an error or result pointer (NULL is ignored).
void sp_free_string(char *string);

/// Number of pieces in the model.
int32_t sp_vocab_size(const sp_processor *processor);

/// Encodes `length` bytes of UTF-8 text. Writes up to `capacity` ids (and, when `begins` and
/// `ends` are non-NULL, each piece's byte range [begin, end) in the input) and returns the
/// number of pieces. If that number exceeds `capacity` nothing beyond `capacity` is written
/// and the caller retries with a larger buffer. Returns -1 and sets *error on failure.
int64_t sp_encode(const sp_processor *processor, const char *text, size_t length,
                  int32_t *ids, uint32_t *begins, uint32_t *ends, size_t capacity,
                  char **error);

/// Decodes ids to text. Returns a malloc'd buffer of *length bytes (not NUL-terminated in
/// meaning: the text may contain NUL) or NULL with *error set. Ids must be in range.
char *sp_decode(const sp_processor *processor, const int32_t *ids, size_t count,
                size_t *length, char **error);

/// The piece string of `id` (pointer valid while the processor lives) and its byte length.
/// Returns NULL for an id outside [0, vocab size).
const char *sp_id_to_piece(const sp_processor *processor, int32_t id, size_t *length);

/// The id of `piece`, or -1 if the model has no such piece (SentencePiece itself answers
/// unknown pieces with the unk id; this API distinguishes them).
int32_t sp_piece_to_id(const sp_processor *processor, const char *piece, size_t length);

/// The piece's score, 0 for an id out of range.
float sp_score(const sp_processor *processor, int32_t id);

/// The piece type of `id` (0 for an id out of range).
sp_piece_type sp_type(const sp_processor *processor, int32_t id);

int sp_is_control(const sp_processor *processor, int32_t id);
int sp_is_byte(const sp_processor *processor, int32_t id);
int sp_is_unknown(const sp_processor *processor, int32_t id);
int sp_is_user_defined(const sp_processor *processor, int32_t id);

/// The model's own serialized ModelProto (malloc'd, *length bytes); NULL on allocation failure.
char *sp_serialized_model(const sp_processor *processor, size_t *length);

#ifdef __cplusplus
}
#endif
