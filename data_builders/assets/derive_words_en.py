"""Provenance of ``words_en.tsv``: how the packaged lexicon was derived, offline, once. Not imported by Harken.

Run (needs ``pip install --target /tmp/wf wordfreq==3.1.1`` and eSpeak NG):
    PYTHONPATH=/tmp/wf python data_builders/assets/derive_words_en.py > data_builders/assets/words_en.tsv

Source: wordfreq 3.1.1 (code Apache-2.0; word-frequency data CC-BY-SA 4.0, https://github.com/rspeer/wordfreq),
English list, most frequent first. Kept: lowercase ASCII words of 3-10 letters; one spelling per eSpeak NG
pronunciation (the more frequent one: homophones such as there/their cannot be told apart from audio, and their
IPA options would be identical). The TSV holds word and Zipf frequency; the spectrogram builder computes IPA itself
with the installed eSpeak NG so the IPA always matches the audio.
"""

import subprocess
import sys

from wordfreq import top_n_list, zipf_frequency

N_KEEP = 4600  # a margin over the benchmark's 4,068 words for homophones a different eSpeak NG version may merge


def main() -> None:
    words = [w for w in top_n_list("en", 30000) if w.isascii() and w.isalpha() and w.islower() and 3 <= len(w) <= 10]
    ipa = subprocess.run(["espeak-ng", "-q", "--ipa", "--sep=_", "-v", "en-us"], input="\n".join(words) + "\n",
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(ipa) == len(words), (len(ipa), len(words))
    seen: set[str] = set()
    print("word\tzipf")
    kept = 0
    for w, p in zip(words, ipa):
        key = p.strip().replace("ˈ", "").replace("ˌ", "")
        if not key or " " in key or key in seen:
            continue  # spelled out / multi-word readings and homophones of a more frequent word
        seen.add(key)
        print(f"{w}\t{zipf_frequency(w, 'en'):.2f}")
        kept += 1
        if kept >= N_KEEP:
            break
    print(f"kept {kept}", file=sys.stderr)


if __name__ == "__main__":
    main()
