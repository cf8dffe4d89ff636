"""The text-only adapter (hippo/adapters/text.py): a stock LlamaForCausalLM's greedy decode through it equals
`generate()`, and hippo_fast's loops run on it (what the vLLM audit's speed rows use)."""

import torch

from hippo_ref.decoding.autoregressive import decode_autoregressive
from hippo_ref.decoding.common import DecodeConfig


def _tiny_llama(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["the user asks the assistant a question and the assistant answers it"] * 20,
                            trainers.BpeTrainer(vocab_size=96, special_tokens=["<unk>", "<s>", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.chat_template = ("{% for m in messages %}<s>{{ m['role'] }} {{ m['content'] }}</s>{% endfor %}"
                               "{% if add_generation_prompt %}<s>assistant{% endif %}")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, initializer_range=0.3,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return tmp_path


def test_text_adapter_greedy_is_generate_and_fast_runs(tmp_path):
    from hippo.checkpoint import load_adapter
    from hippo_fast.cache import static_prefill
    from hippo_fast.decoding.speculative import decode_speculative

    adapter = load_adapter(_tiny_llama(tmp_path))
    assert adapter.family == "llama"
    inputs = adapter.prepare(None, "the user asks")
    cfg = DecodeConfig(max_new_tokens=12, eos_token_ids=())
    ours = decode_autoregressive(adapter.prefill(inputs), cfg).tokens
    stock = adapter.model.generate(**adapter.hf_generate_inputs(inputs), max_new_tokens=12, do_sample=False,
                                   eos_token_id=None)[0, inputs.num_tokens:].tolist()
    assert ours == stock
    target = static_prefill(adapter, inputs, 32)
    draft = static_prefill(adapter, inputs, 32)
    assert decode_speculative(target, draft, DecodeConfig(max_new_tokens=12, gamma=3, eos_token_ids=())).tokens == ours
    try:
        adapter.prepare(object(), "with a video")
    except Exception as err:  # a clip given to a text model is refused, saying what to do
        assert "text-only" in str(err)
    else:
        raise AssertionError("a text model accepted a video")
