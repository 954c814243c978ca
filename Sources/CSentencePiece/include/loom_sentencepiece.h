/* A C interface to Debian's SentencePiece (libsentencepiece-dev), so that Swift can train,
 * load and apply subword models without C++ interop. Every call reports failure through its
 * return value and, where it can fail, an error string the caller frees with loom_spm_free_string. */
#ifndef LOOM_SENTENCEPIECE_H
#define LOOM_SENTENCEPIECE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Trains a model on the lines of `input_path` (`model_type` "unigram" or "bpe") with Loom's
 * special ids: 0 padding, 1 start, 2 end, 3 unknown. On success returns 0 and the serialized
 * model in *model (malloc'ed, *model_size bytes); on failure returns -1 and *error. */
int loom_spm_train(const char *input_path, int vocab_size, const char *model_type, char **model, long *model_size, char **error);

/* A processor for a serialized model, or NULL with *error. */
void *loom_spm_load(const char *model, long model_size, char **error);
void loom_spm_free(void *processor);
int loom_spm_size(const void *processor);

/* The ids of `text` into ids[0..<capacity]; returns how many there are (call again with more
 * room when that exceeds capacity), or -1 on failure. */
long loom_spm_encode(const void *processor, const char *text, int *ids, long capacity);

/* The text of `ids` (malloc'ed, NUL-terminated), or NULL on failure. */
char *loom_spm_decode(const void *processor, const int *ids, long count);

/* The piece of an id (malloc'ed), for display. */
char *loom_spm_piece(const void *processor, int id);

void loom_spm_free_string(char *text);

#ifdef __cplusplus
}
#endif
#endif
