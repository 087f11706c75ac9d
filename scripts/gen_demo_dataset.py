#!/usr/bin/env python3
"""Generate the SYNTHETIC demo dataset: short doctor-patient dialogues with one ICD-10-CM code each.

Every dialogue is assembled from hand-written phrase lists below (no real patient, no real record), so the
file can ship with the project and be shown anywhere. It is shaped like MedSynth's CSV (columns " Note",
"Dialogue", "ICD10", "ICD10_desc"; undotted codes) so that the `medsynth` preset reads it unchanged.

Deterministic: the same --seed writes the same bytes. Usage:
    python3 scripts/gen_demo_dataset.py [--per-code 8] [--seed 7] [--out data/demo/demo_dialogues.csv]
"""
import argparse
import csv
import io
import os
import random

# code, description (ICD-10-CM 2026), complaints, details, findings, assessment in lay words
CASES = [
    ("J069", "Acute upper respiratory infection, unspecified",
     ["a runny nose and a sore throat", "a stuffy nose and sneezing", "a cold that started a few days ago"],
     ["mild cough, no shortness of breath", "low grade temperature, feeling tired", "nasal congestion, scratchy throat"],
     ["mild nasal congestion and a slightly red throat, lungs clear", "clear rhinorrhea, ears normal, lungs clear"],
     "a common cold, an upper respiratory infection"),
    ("I10", "Essential (primary) hypertension",
     ["high blood pressure readings at the pharmacy", "occasional morning headaches and high home readings",
      "a follow-up for my blood pressure"],
     ["home readings around 150 over 95", "no chest pain, my father had high blood pressure",
      "I eat a lot of salty food"],
     ["blood pressure 156/98 on both arms, heart sounds normal", "blood pressure 150/96, no edema"],
     "high blood pressure without another cause"),
    ("E119", "Type 2 diabetes mellitus without complications",
     ["being very thirsty and urinating a lot", "my sugar being high on the last blood test",
      "tiredness and frequent urination"],
     ["my HbA1c was 7.8", "no numbness in the feet, vision is fine", "I gained weight over the last year"],
     ["BMI 31, foot exam with normal sensation", "fasting glucose 168, no retinopathy reported"],
     "type 2 diabetes, no complications so far"),
    ("J45909", "Unspecified asthma, uncomplicated",
     ["wheezing when I exercise", "tight chest and wheezing at night", "coughing and wheezing around cats"],
     ["the inhaler helps within minutes", "no fever, symptoms come and go", "I had asthma as a child"],
     ["scattered expiratory wheeze, oxygen saturation 98 percent", "mild wheeze, peak flow reduced"],
     "asthma, not a severe attack"),
    ("M5450", "Low back pain, unspecified",
     ["pain in my lower back", "my back hurting after lifting boxes", "lower back stiffness every morning"],
     ["no pain going down the legs, no numbness", "it is worse when I sit for long",
      "no problems with bladder or bowels"],
     ["tenderness of the lumbar muscles, straight leg raise negative", "reduced lumbar flexion, neuro exam normal"],
     "nonspecific low back pain"),
    ("N390", "Urinary tract infection, site not specified",
     ["burning when I pee", "needing to urinate all the time", "cloudy urine and burning"],
     ["no fever, no flank pain", "a little pressure above the pubic bone", "it started two days ago"],
     ["urine dipstick positive for nitrites and leukocytes", "suprapubic tenderness, no costovertebral angle tenderness"],
     "a urinary tract infection"),
    ("K219", "Gastro-esophageal reflux disease without esophagitis",
     ["heartburn after meals", "a sour taste coming up at night", "burning behind the breastbone"],
     ["worse when lying down after dinner", "antacids help a bit", "no trouble swallowing, no weight loss"],
     ["epigastric tenderness is absent, abdomen soft", "normal abdominal exam"],
     "acid reflux disease"),
    ("F329", "Major depressive disorder, single episode, unspecified",
     ["feeling down for weeks", "no interest in anything anymore", "sadness and trouble getting out of bed"],
     ["sleeping badly and low energy", "I stopped seeing friends", "no thoughts of harming myself"],
     ["flat affect, PHQ-9 score of 16", "low mood, psychomotor slowing, no suicidal ideation"],
     "an episode of depression"),
    ("F419", "Anxiety disorder, unspecified",
     ["feeling nervous all the time", "constant worrying and a racing heart", "restlessness and tension"],
     ["trouble falling asleep because of worries", "no specific trigger", "my hands shake sometimes"],
     ["anxious appearance, heart rate 96, rest of exam normal", "GAD-7 score of 13"],
     "an anxiety disorder"),
    ("G43909", "Migraine, unspecified, not intractable, without status migrainosus",
     ["throbbing headaches on one side", "headaches with nausea and light sensitivity",
      "bad headaches that make me lie in a dark room"],
     ["they last about a day", "ibuprofen usually works", "my mother had migraines too"],
     ["normal neurological exam", "no papilledema, normal reflexes"],
     "migraine"),
    ("J029", "Acute pharyngitis, unspecified",
     ["a very sore throat", "pain when swallowing", "a scratchy painful throat since yesterday"],
     ["no cough, mild fever", "my voice is fine", "no rash"],
     ["red pharynx without exudate, small tender neck nodes", "inflamed throat, tonsils not enlarged"],
     "a sore throat from pharyngitis"),
    ("H6690", "Otitis media, unspecified, unspecified ear",
     ["ear pain", "an earache and muffled hearing", "pain inside the ear after a cold"],
     ["fever last night", "no discharge from the ear", "it hurts more when lying down"],
     ["bulging red tympanic membrane", "eardrum dull and red, no perforation"],
     "a middle ear infection"),
    ("L03115", "Cellulitis of right lower limb",
     ["a red swollen area on my right leg", "my right shin is hot and painful", "redness spreading on the right lower leg"],
     ["I had a small cut there last week", "mild fever yesterday", "the redness grew since Monday"],
     ["warm erythematous tender area over the right shin, no fluctuance",
      "spreading erythema on the right lower leg"],
     "a skin infection of the right leg"),
    ("R519", "Headache, unspecified",
     ["headaches", "a dull headache most afternoons", "pressure in my head"],
     ["no nausea, no visual changes", "not the worst headache of my life", "screens make it a bit worse"],
     ["normal neurological exam, blood pressure normal", "no neck stiffness, fundi normal"],
     "a headache without a clear cause yet"),
    ("E039", "Hypothyroidism, unspecified",
     ["tiredness and feeling cold all the time", "weight gain and dry skin", "slowness and constipation"],
     ["my TSH was high on the last test", "my hair is thinning", "no neck swelling"],
     ["dry skin, slow reflexes, TSH 9.2", "heart rate 58, no goiter"],
     "an underactive thyroid"),
    ("D649", "Anemia, unspecified",
     ["feeling weak and out of breath on stairs", "being pale and tired", "dizziness when I stand up"],
     ["my hemoglobin was low", "no blood in the stool that I noticed", "heavy periods in the past"],
     ["pale conjunctivae, hemoglobin 9.8", "pallor, heart rate 98, soft flow murmur"],
     "anemia, cause to be found"),
    ("J209", "Acute bronchitis, unspecified",
     ["a chesty cough for a week", "coughing up phlegm", "a cough after a cold"],
     ["mild fever at first", "no shortness of breath at rest", "chest sore from coughing"],
     ["scattered rhonchi that clear with cough, saturation 97 percent", "no crackles, normal breathing rate"],
     "acute bronchitis"),
    ("K5900", "Constipation, unspecified",
     ["not being able to go to the toilet", "hard stools every few days", "bloating and straining"],
     ["I do not drink much water", "no blood, no weight loss", "it has been like this for a month"],
     ["soft abdomen, mild left lower quadrant fullness", "normal bowel sounds, no masses"],
     "constipation"),
    ("M1990", "Unspecified osteoarthritis, unspecified site",
     ["stiff painful joints", "aching joints in the morning", "joint pain worse at the end of the day"],
     ["stiffness lasts less than half an hour", "it is worse after walking", "no joint swelling"],
     ["crepitus on joint movement, no warmth", "bony enlargement, reduced range of motion"],
     "wear and tear arthritis"),
    ("B349", "Viral infection, unspecified",
     ["fever and aching all over", "feeling unwell with chills", "body aches and tiredness"],
     ["it started two days ago", "no cough, no urinary symptoms", "my kids had the same"],
     ["temperature 38.2, no focal findings", "mild fever, throat and lungs normal"],
     "a viral infection"),
    ("L309", "Dermatitis, unspecified",
     ["an itchy rash", "red itchy skin patches", "dry scaly itchy spots"],
     ["no new soaps", "it comes and goes", "cream from the pharmacy helped a little"],
     ["erythematous scaly patches without vesicles", "eczematous rash on the forearms"],
     "dermatitis, an inflamed skin rash"),
    ("R1030", "Lower abdominal pain, unspecified",
     ["pain in the lower belly", "cramping low in my abdomen", "lower tummy pain for two days"],
     ["no vomiting, normal stools", "no burning when I urinate", "pain comes and goes"],
     ["mild lower abdominal tenderness, no guarding", "soft abdomen, no rebound"],
     "lower abdominal pain, cause not yet clear"),
    ("E785", "Hyperlipidemia, unspecified",
     ["my cholesterol results", "high cholesterol on a screening test", "a talk about my lipid levels"],
     ["LDL was 190", "no chest pain", "my diet has a lot of fried food"],
     ["normal exam, no xanthomas", "blood pressure normal, BMI 28"],
     "high blood lipids"),
    ("J301", "Allergic rhinitis due to pollen",
     ["sneezing every spring", "itchy eyes and runny nose in pollen season", "hay fever symptoms"],
     ["it is worse on windy days outside", "antihistamines help", "no fever"],
     ["pale boggy nasal mucosa, watery eyes", "clear discharge, allergic shiners"],
     "hay fever from pollen"),
    ("A09", "Infectious gastroenteritis and colitis, unspecified",
     ["diarrhea and vomiting", "stomach bug with loose stools", "watery diarrhea since yesterday"],
     ["others at home had the same", "mild fever and cramps", "I can keep water down now"],
     ["mildly dry mucous membranes, diffuse mild tenderness", "hyperactive bowel sounds, no peritonism"],
     "infectious gastroenteritis"),
    ("G4700", "Insomnia, unspecified",
     ["trouble sleeping", "waking up at night and not falling asleep again", "lying awake for hours"],
     ["for about two months", "I drink coffee in the evening", "I feel exhausted during the day"],
     ["normal exam, no signs of thyroid disease", "alert but tired appearing"],
     "insomnia"),
    ("N200", "Calculus of kidney",
     ["severe pain in my side", "flank pain coming in waves", "sharp pain from the back to the groin"],
     ["I saw blood in my urine", "I feel nauseous with the pain", "I had a stone years ago"],
     ["costovertebral angle tenderness, urine shows blood", "ultrasound shows a stone in the kidney"],
     "a kidney stone"),
    ("I4891", "Unspecified atrial fibrillation",
     ["a fluttering heartbeat", "palpitations and an irregular pulse", "my heart racing irregularly"],
     ["it comes in episodes", "mild shortness of breath with it", "no chest pain"],
     ["irregularly irregular pulse, ECG shows atrial fibrillation", "heart rate 110 and irregular"],
     "atrial fibrillation"),
    ("H109", "Unspecified conjunctivitis",
     ["a red eye", "sticky red eyes in the morning", "gritty itchy eyes"],
     ["vision is normal", "no eye pain", "my colleague had pink eye"],
     ["conjunctival injection, normal visual acuity", "discharge, cornea clear"],
     "conjunctivitis"),
    ("S93401A", "Sprain of unspecified ligament of right ankle, initial encounter",
     ["twisting my right ankle", "right ankle pain after a fall", "a swollen right ankle from football"],
     ["I can walk a few steps", "it happened yesterday", "I heard no crack"],
     ["swelling over the lateral right ankle, no bony tenderness", "bruising of the right ankle, stable joint"],
     "a sprained right ankle, first visit"),
]

GREETINGS = ["Good morning, what brings you in today?", "Hello, how can I help you?",
             "Hi, what seems to be the problem?", "Welcome, tell me what is going on."]
DURATIONS = ["for three days", "for about a week", "since last weekend", "for two weeks", "on and off for a month"]
AGES = list(range(19, 84))
CLOSINGS = ["Thank you, doctor.", "Okay, that makes sense.", "Thanks, I will do that.", "Alright, thank you."]
PLANS = ["We will start treatment and see you again in two weeks.", "I will give you written advice and a follow-up.",
         "Let us treat this and check back if it does not improve.", "We will do some tests and follow up."]


def dialogue(rng, case):
    code, _desc, complaints, details, findings, lay = case
    age = rng.choice(AGES)
    detail_a, detail_b = rng.sample(details, 2)
    # Noise so that the task is not a keyword lookup: half of the doctors do not name the diagnosis, and most
    # patients mention a side complaint that belongs to another condition of the set.
    other = rng.choice([c for c in CASES if c[0] != code])
    history = (f"Not really, I am {age}. I did have {rng.choice(other[2])} a while ago, but that settled."
               if rng.random() < 0.6 else f"Not really, I am {age} and usually healthy.")
    verdict = (f"Doctor: This looks like {lay}. {rng.choice(PLANS)}" if rng.random() < 0.5
               else f"Doctor: I have an idea what this is. {rng.choice(PLANS)}")
    lines = [
        f"Doctor: {rng.choice(GREETINGS)}",
        f"Patient: I have had {rng.choice(complaints)} {rng.choice(DURATIONS)}.",
        "Doctor: Can you tell me more about it?",
        f"Patient: Well, {detail_a}. Also {detail_b}.",
        "Doctor: Any medical problems or medicines I should know about?",
        f"Patient: {history}",
        "Doctor: Let me examine you.",
        f"Doctor: On examination there is {rng.choice(findings)}.",
        verdict,
        f"Patient: {rng.choice(CLOSINGS)}",
    ]
    note = (f"Subjective: {age}-year-old patient with {rng.choice(complaints)}; {detail_a}. "
            f"Objective: {rng.choice(findings)}. Assessment: {lay}. Plan: {rng.choice(PLANS)}")
    return "\n".join(lines), note


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-code", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "demo",
                                                  "demo_dialogues.csv"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([" Note", "Dialogue", "ICD10", "ICD10_desc", "ID"])
    rows = []
    for case in CASES:
        for _ in range(args.per_code):
            d, n = dialogue(rng, case)
            rows.append((n, d, case[0], case[1]))
    rng.shuffle(rows)
    for i, (n, d, code, desc) in enumerate(rows, 1):
        w.writerow([n, d, code, desc, f"demo-{i:04d}"])
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())
    os.replace(tmp, args.out)
    print(f"wrote {len(rows)} synthetic dialogues for {len(CASES)} codes to {args.out}")


if __name__ == "__main__":
    main()
