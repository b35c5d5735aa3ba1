"""Small fixed data sets for accuracy checks and benchmarks.

SENTENCES  varied English (and a few other languages) sentences of different
           lengths and topics, for comparing sentence embeddings of a model
           before and after acceleration.
"""

SENTENCES = (
    "A man is eating a piece of bread.",
    "The quarterly earnings report exceeded analysts' expectations by a wide margin.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Can you recommend a good Italian restaurant near the train station?",
    "The cat slept on the windowsill all afternoon.",
    "Interest rates were raised by a quarter point to curb inflation.",
    "She practised the violin for three hours before the concert.",
    "Rust's borrow checker prevents data races at compile time.",
    "The glacier has retreated almost two kilometres since 1950.",
    "I forgot my umbrella and got soaked on the way home.",
    "The committee postponed the vote until next Tuesday.",
    "Neural networks can be pruned to a tenth of their weights with little loss.",
    "Add two cups of flour and stir until the batter is smooth.",
    "The striker scored twice in the final ten minutes of the match.",
    "Mitochondria are often called the powerhouse of the cell.",
    "Our flight was delayed because of fog at the airport.",
    "The museum's new exhibition features sculptures from ancient Greece.",
    "Please restart the server after installing the security patch.",
    "He apologised for the misunderstanding and offered a refund.",
    "Volcanic ash grounded hundreds of flights across northern Europe.",
    "The toddler stacked the wooden blocks into a wobbly tower.",
    "Shares of the chip maker fell sharply after the export ban.",
    "Le train pour Lyon part à huit heures.",
    "Der Hund spielt im Garten mit einem Ball.",
    "El mercado abre todos los domingos por la mañana.",
    "Why is the sky blue during the day but red at sunset?",
    "The contract must be signed by both parties before it takes effect.",
    "A gentle breeze rustled the leaves of the old oak tree.",
    "Vaccines train the immune system to recognise a pathogen.",
    "The novel follows three generations of a family in rural Ireland.",
    "Turn left at the second roundabout and the hotel is on your right.",
    "Compilers translate source code into machine instructions.",
    "The orchestra tuned their instruments as the audience took their seats.",
    "Heavy rain is expected throughout the weekend in coastal areas.",
    "Is this seat taken?",
    "The bakery on the corner sells fresh croissants every morning.",
)
