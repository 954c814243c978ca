// The C interface of loom_sentencepiece.h over SentencePiece's C++ API.
#include "loom_sentencepiece.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

static char *copy_string(const std::string &s) {
    char *out = static_cast<char *>(std::malloc(s.size() + 1));
    if (out == nullptr) return nullptr;
    std::memcpy(out, s.data(), s.size());
    out[s.size()] = '\0';
    return out;
}

int loom_spm_train(const char *input_path, int vocab_size, const char *model_type, char **model, long *model_size, char **error) {
    std::unordered_map<std::string, std::string> arguments = {
        {"input", input_path},
        {"model_type", model_type},
        {"vocab_size", std::to_string(vocab_size)},
        {"pad_id", "0"}, {"bos_id", "1"}, {"eos_id", "2"}, {"unk_id", "3"},
        {"character_coverage", "1.0"},
        // A small corpus may not have room for the size asked: take what it has.
        {"hard_vocab_limit", "false"},
        {"minloglevel", "2"},
    };
    std::string serialized;
    const auto status = sentencepiece::SentencePieceTrainer::Train(arguments, nullptr, &serialized);
    if (!status.ok()) {
        *error = copy_string(status.ToString());
        return -1;
    }
    *model = static_cast<char *>(std::malloc(serialized.size()));
    if (*model == nullptr) {
        *error = copy_string("out of memory");
        return -1;
    }
    std::memcpy(*model, serialized.data(), serialized.size());
    *model_size = static_cast<long>(serialized.size());
    return 0;
}

void *loom_spm_load(const char *model, long model_size, char **error) {
    auto *processor = new sentencepiece::SentencePieceProcessor();
    const auto status = processor->LoadFromSerializedProto(std::string(model, static_cast<size_t>(model_size)));
    if (!status.ok()) {
        *error = copy_string(status.ToString());
        delete processor;
        return nullptr;
    }
    return processor;
}

void loom_spm_free(void *processor) { delete static_cast<sentencepiece::SentencePieceProcessor *>(processor); }

int loom_spm_size(const void *processor) { return static_cast<const sentencepiece::SentencePieceProcessor *>(processor)->GetPieceSize(); }

long loom_spm_encode(const void *processor, const char *text, int *ids, long capacity) {
    std::vector<int> out;
    if (!static_cast<const sentencepiece::SentencePieceProcessor *>(processor)->Encode(text, &out).ok()) return -1;
    for (long i = 0; i < static_cast<long>(out.size()) && i < capacity; i++) ids[i] = out[static_cast<size_t>(i)];
    return static_cast<long>(out.size());
}

char *loom_spm_decode(const void *processor, const int *ids, long count) {
    std::vector<int> in(ids, ids + count);
    std::string text;
    if (!static_cast<const sentencepiece::SentencePieceProcessor *>(processor)->Decode(in, &text).ok()) return nullptr;
    return copy_string(text);
}

char *loom_spm_piece(const void *processor, int id) {
    return copy_string(static_cast<const sentencepiece::SentencePieceProcessor *>(processor)->IdToPiece(id));
}

void loom_spm_free_string(char *text) { std::free(text); }
