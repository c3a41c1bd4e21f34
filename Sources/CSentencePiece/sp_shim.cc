// C API over SentencePieceProcessor; see include/sp_shim.h for the contracts.
// No C++ exception may cross into Swift, so every entry point that allocates catches them.
#include "sp_shim.h"

#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

struct sp_processor {
    sentencepiece::SentencePieceProcessor processor;
    // Piece types, read from the serialized ModelProto: 0.1.97's public header has no
    // IsUserDefined and no ModelProto definition, so the shim reads the wire format itself.
    std::vector<uint8_t> types;
};

namespace {

char *copy_message(const std::string &message) {
    char *copy = static_cast<char *>(std::malloc(message.size() + 1));
    if (copy != nullptr) {
        std::memcpy(copy, message.data(), message.size());
        copy[message.size()] = '\0';
    }
    return copy;
}

void set_error(char **error, const std::string &message) {
    if (error != nullptr) *error = copy_message(message);
}

// Minimal protobuf wire-format reading: just enough to find ModelProto.pieces[i].type.
bool read_varint(const uint8_t *&cursor, const uint8_t *end, uint64_t &value) {
    value = 0;
    for (int shift = 0; shift < 64 && cursor < end; shift += 7) {
        uint8_t byte = *cursor++;
        value |= uint64_t(byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) return true;
    }
    return false;
}

bool skip_field(const uint8_t *&cursor, const uint8_t *end, uint32_t wire_type) {
    uint64_t value = 0;
    switch (wire_type) {
    case 0: return read_varint(cursor, end, value);
    case 1: if (end - cursor < 8) return false; cursor += 8; return true;
    case 5: if (end - cursor < 4) return false; cursor += 4; return true;
    case 2:
        if (!read_varint(cursor, end, value) || value > uint64_t(end - cursor)) return false;
        cursor += value;
        return true;
    default: return false;
    }
}

// Piece type of one serialized ModelProto.SentencePiece (field 3; proto default NORMAL).
bool piece_type(const uint8_t *cursor, const uint8_t *end, uint8_t &type) {
    type = SP_PIECE_NORMAL;
    while (cursor < end) {
        uint64_t key = 0;
        if (!read_varint(cursor, end, key)) return false;
        if (key == ((3 << 3) | 0)) {
            uint64_t value = 0;
            if (!read_varint(cursor, end, value)) return false;
            type = uint8_t(value);
        } else if (!skip_field(cursor, end, uint32_t(key & 7))) {
            return false;
        }
    }
    return true;
}

bool read_piece_types(const std::string &model, std::vector<uint8_t> &types) {
    const uint8_t *cursor = reinterpret_cast<const uint8_t *>(model.data());
    const uint8_t *end = cursor + model.size();
    while (cursor < end) {
        uint64_t key = 0;
        if (!read_varint(cursor, end, key)) return false;
        if (key == ((1 << 3) | 2)) {
            uint64_t length = 0;
            if (!read_varint(cursor, end, length) || length > uint64_t(end - cursor)) return false;
            uint8_t type = 0;
            if (!piece_type(cursor, cursor + length, type)) return false;
            types.push_back(type);
            cursor += length;
        } else if (!skip_field(cursor, end, uint32_t(key & 7))) {
            return false;
        }
    }
    return true;
}

sp_processor *finish_load(std::unique_ptr<sp_processor> handle,
                          const sentencepiece::util::Status &status, char **error) {
    if (!status.ok()) {
        set_error(error, status.ToString());
        return nullptr;
    }
    if (!read_piece_types(handle->processor.serialized_model_proto(), handle->types) ||
        int(handle->types.size()) != handle->processor.GetPieceSize()) {
        set_error(error, "cannot read piece types from the loaded model");
        return nullptr;
    }
    return handle.release();
}

bool in_range(const sp_processor *p, int32_t id) {
    return id >= 0 && size_t(id) < p->types.size();
}

}  // namespace

extern "C" {

sp_processor *sp_load_from_serialized(const void *bytes, size_t length, char **error) {
    try {
        auto handle = std::make_unique<sp_processor>();
        auto status = handle->processor.LoadFromSerializedProto(
            absl::string_view(static_cast<const char *>(bytes), length));
        return finish_load(std::move(handle), status, error);
    } catch (const std::exception &e) {
        set_error(error, std::string("sentencepiece: ") + e.what());
        return nullptr;
    }
}

sp_processor *sp_load_from_file(const char *path, char **error) {
    try {
        auto handle = std::make_unique<sp_processor>();
        auto status = handle->processor.Load(path);
        return finish_load(std::move(handle), status, error);
    } catch (const std::exception &e) {
        set_error(error, std::string("sentencepiece: ") + e.what());
        return nullptr;
    }
}

void sp_free(sp_processor *processor) { delete processor; }

void sp_free_string(char *string) { std::free(string); }

int32_t sp_vocab_size(const sp_processor *processor) {
    return int32_t(processor->types.size());
}

int64_t sp_encode(const sp_processor *processor, const char *text, size_t length,
                  int32_t *ids, uint32_t *begins, uint32_t *ends, size_t capacity,
                  char **error) {
    try {
        absl::string_view input(text, length);
        if (begins == nullptr || ends == nullptr) {
            std::vector<int> result;
            auto status = processor->processor.Encode(input, &result);
            if (!status.ok()) {
                set_error(error, status.ToString());
                return -1;
            }
            for (size_t i = 0; i < result.size() && i < capacity; ++i) ids[i] = result[i];
            return int64_t(result.size());
        }
        sentencepiece::ImmutableSentencePieceText spt;
        auto status = processor->processor.Encode(input, spt.mutable_proto());
        if (!status.ok()) {
            set_error(error, status.ToString());
            return -1;
        }
        size_t count = spt.pieces_size();
        for (size_t i = 0; i < count && i < capacity; ++i) {
            auto piece = spt.pieces(int(i));
            ids[i] = int32_t(piece.id());
            begins[i] = piece.begin();
            ends[i] = piece.end();
        }
        return int64_t(count);
    } catch (const std::exception &e) {
        set_error(error, std::string("sentencepiece: ") + e.what());
        return -1;
    }
}

char *sp_decode(const sp_processor *processor, const int32_t *ids, size_t count,
                size_t *length, char **error) {
    try {
        std::vector<int> input(ids, ids + count);
        for (int id : input) {
            if (!in_range(processor, id)) {
                set_error(error, "id " + std::to_string(id) + " is outside the vocabulary");
                return nullptr;
            }
        }
        std::string text;
        auto status = processor->processor.Decode(input, &text);
        if (!status.ok()) {
            set_error(error, status.ToString());
            return nullptr;
        }
        // malloc(0) may return NULL; always allocate at least one byte so NULL means failure.
        char *buffer = static_cast<char *>(std::malloc(text.size() + 1));
        if (buffer == nullptr) {
            set_error(error, "out of memory");
            return nullptr;
        }
        std::memcpy(buffer, text.data(), text.size());
        buffer[text.size()] = '\0';
        *length = text.size();
        return buffer;
    } catch (const std::exception &e) {
        set_error(error, std::string("sentencepiece: ") + e.what());
        return nullptr;
    }
}

const char *sp_id_to_piece(const sp_processor *processor, int32_t id, size_t *length) {
    if (!in_range(processor, id)) return nullptr;
    const std::string &piece = processor->processor.IdToPiece(id);
    *length = piece.size();
    return piece.data();
}

int32_t sp_piece_to_id(const sp_processor *processor, const char *piece, size_t length) {
    try {
        absl::string_view view(piece, length);
        int id = processor->processor.PieceToId(view);
        // PieceToId answers the unk id for pieces it does not know; tell the two apart.
        if (!in_range(processor, id) || processor->processor.IdToPiece(id) != view) return -1;
        return int32_t(id);
    } catch (const std::exception &) {
        return -1;
    }
}

float sp_score(const sp_processor *processor, int32_t id) {
    return in_range(processor, id) ? processor->processor.GetScore(id) : 0.0f;
}

sp_piece_type sp_type(const sp_processor *processor, int32_t id) {
    return in_range(processor, id) ? sp_piece_type(processor->types[size_t(id)]) : sp_piece_type(0);
}

int sp_is_control(const sp_processor *processor, int32_t id) {
    return sp_type(processor, id) == SP_PIECE_CONTROL;
}
int sp_is_byte(const sp_processor *processor, int32_t id) {
    return sp_type(processor, id) == SP_PIECE_BYTE;
}
int sp_is_unknown(const sp_processor *processor, int32_t id) {
    return sp_type(processor, id) == SP_PIECE_UNKNOWN;
}
int sp_is_user_defined(const sp_processor *processor, int32_t id) {
    return sp_type(processor, id) == SP_PIECE_USER_DEFINED;
}

char *sp_serialized_model(const sp_processor *processor, size_t *length) {
    try {
        std::string model = processor->processor.serialized_model_proto();
        char *buffer = static_cast<char *>(std::malloc(model.size() + 1));
        if (buffer == nullptr) return nullptr;
        std::memcpy(buffer, model.data(), model.size());
        *length = model.size();
        return buffer;
    } catch (const std::exception &) {
        return nullptr;
    }
}

}  // extern "C"
